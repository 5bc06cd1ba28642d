//! The gradient source of a transfer attack: a weighted ensemble of differentiable models,
//! with mirrored inputs and input diversity (random translations).

use std::sync::Arc;

use advface_core::{Descriptor, Differentiable, Metric, Objective, PixelBatch};

use crate::rng::Rng;
use crate::AttackError;

/// One model of an ensemble.
#[derive(Clone)]
pub struct Member {
    /// The model (a student; the black box's network only in the white-box reference).
    pub model: Arc<dyn Differentiable>,
    /// Its weight; weights are normalised to sum to 1.
    pub weight: f32,
}

/// Input diversity (Xie et al. 2019, here as random translations of the whole image by up
/// to `max_shift` pixels, edges replicated, drawn anew each step with probability `prob`):
/// gradients that survive small shifts transfer better from students to the black box.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Diversity {
    /// Largest shift in pixels, each axis.
    pub max_shift: i32,
    /// Probability of shifting in a step.
    pub prob: f64,
}

/// A weighted ensemble of differentiable models.
#[derive(Clone)]
pub struct Ensemble {
    members: Vec<Member>,
    /// Also take the gradient on the horizontally mirrored image (the 3rd-place team's
    /// mirroring) and average the two.
    pub mirror: bool,
    /// Random translations of the input, or none.
    pub diversity: Option<Diversity>,
}

/// Loss and gradient of a batch under an ensemble.
#[derive(Debug, Clone)]
pub struct LossAndGrad {
    /// Per item: the weighted mean over members (and mirror copies) of the item's objective
    /// loss on the model's descriptor (impersonation under L2: the mean L2 distance to the
    /// item's targets).
    pub loss: Vec<f64>,
    /// Gradient of the sum of `loss` with respect to the pixels.
    ///
    /// # Shapes
    /// `[n, 3, h, w]`, the batch's shape, per unit of the `[0, 1]` pixel scale.
    pub grad: Vec<f32>,
}

impl Ensemble {
    /// An ensemble; weights must be positive and finite, descriptor lengths equal.
    pub fn new(members: Vec<Member>) -> Result<Self, AttackError> {
        if members.is_empty() {
            return Err(AttackError::BadInput(
                "an ensemble needs at least one model".into(),
            ));
        }
        let len = members[0].model.descriptor_len();
        for m in &members {
            if !(m.weight.is_finite() && m.weight > 0.0) {
                return Err(AttackError::BadInput(format!(
                    "weight of '{}' must be positive and finite, got {}",
                    m.model.name(),
                    m.weight
                )));
            }
            if m.model.descriptor_len() != len {
                return Err(AttackError::BadInput(format!(
                    "descriptor length mismatch in the ensemble: '{}' gives {}, '{}' gives {}",
                    members[0].model.name(),
                    len,
                    m.model.name(),
                    m.model.descriptor_len()
                )));
            }
        }
        let total: f32 = members.iter().map(|m| m.weight).sum();
        let members = members
            .into_iter()
            .map(|m| Member {
                weight: m.weight / total,
                ..m
            })
            .collect();
        Ok(Self {
            members,
            mirror: false,
            diversity: None,
        })
    }

    /// The members, weights normalised.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Descriptor length of the members.
    pub fn descriptor_len(&self) -> usize {
        self.members[0].model.descriptor_len()
    }

    /// Names of the members, for records.
    pub fn names(&self) -> Vec<String> {
        self.members.iter().map(|m| m.model.name()).collect()
    }

    /// Loss (distance of each item's descriptor to its target, L2) and its input gradient.
    ///
    /// # Shapes
    /// `x`: `[n, 3, h, w]` in `[0, 1]`; `targets`: `n` descriptors.
    pub fn loss_and_grad(
        &self,
        x: &PixelBatch,
        targets: &[Descriptor],
        rng: &mut Rng,
    ) -> Result<LossAndGrad, AttackError> {
        let objectives: Vec<Objective> = targets
            .iter()
            .map(|t| Objective::impersonate(vec![t.clone()]))
            .collect();
        let refs: Vec<&Objective> = objectives.iter().collect();
        self.loss_and_grad_objectives(x, &refs, &Metric::FACE_API, rng)
    }

    /// As [`Ensemble::loss_and_grad`] with a set of targets per item: an item's loss is its
    /// mean L2 distance to every target of its set (the MCS2018 objective of one image, in
    /// one forward and backward pass however many targets).
    ///
    /// # Shapes
    /// `x`: `[n, 3, h, w]` in `[0, 1]`; `targets`: `n` non-empty sets.
    pub fn loss_and_grad_sets(
        &self,
        x: &PixelBatch,
        targets: &[&[Descriptor]],
        rng: &mut Rng,
    ) -> Result<LossAndGrad, AttackError> {
        let objectives: Vec<Objective> = targets
            .iter()
            .map(|t| Objective::impersonate(t.to_vec()))
            .collect();
        let refs: Vec<&Objective> = objectives.iter().collect();
        self.loss_and_grad_objectives(x, &refs, &Metric::FACE_API, rng)
    }

    /// Each item's objective loss under `metric` on the ensemble's descriptors, and the
    /// input gradient of their sum, in one forward and backward pass per model however many
    /// descriptors an objective holds.
    ///
    /// # Shapes
    /// `x`: `[n, 3, h, w]` in `[0, 1]`; `objectives`: `n`, each with at least one descriptor
    /// of the ensemble's length.
    pub fn loss_and_grad_objectives(
        &self,
        x: &PixelBatch,
        objectives: &[&Objective],
        metric: &Metric,
        rng: &mut Rng,
    ) -> Result<LossAndGrad, AttackError> {
        let [n, _, h, w] = x.shape();
        if objectives.len() != n {
            return Err(AttackError::BadInput(format!(
                "expected {n} target descriptors, got {}",
                objectives.len()
            )));
        }
        if objectives.iter().any(|o| o.references().is_empty()) {
            return Err(AttackError::BadInput("an empty set of targets".into()));
        }
        let len = self.descriptor_len();
        if let Some(t) = objectives
            .iter()
            .flat_map(|o| o.references().iter())
            .find(|t| t.len() != len)
        {
            return Err(AttackError::BadInput(format!(
                "descriptor length mismatch: the ensemble ({}) gives {len}, a target has {} \
                 (a student trained on another black box?)",
                self.names().join(", "),
                t.len()
            )));
        }
        // The views of the batch: the image itself, its mirror, each possibly shifted.
        let shift = match self.diversity {
            Some(d) if d.max_shift > 0 && rng.uniform() < d.prob => (
                rng.range_i32(-d.max_shift, d.max_shift),
                rng.range_i32(-d.max_shift, d.max_shift),
            ),
            _ => (0, 0),
        };
        let views = if self.mirror { 2 } else { 1 };
        let plane = 3 * h * w;
        let mut input = Vec::with_capacity(views * n * plane);
        input.extend(shifted(x.as_slice(), n, h, w, shift));
        if self.mirror {
            let m = mirrored(x.as_slice(), n, h, w);
            input.extend(shifted(&m, n, h, w, shift));
        }
        let batch = PixelBatch::new(views * n, h, w, input)
            .map_err(|e| AttackError::BadInput(e.to_string()))?;
        let mut loss = vec![0f64; n];
        let mut grad_views = vec![0f32; views * n * plane];
        for m in &self.members {
            let mut dists = vec![0f64; views * n];
            let (_, g) = m
                .model
                .descriptors_and_vjp(&batch, &mut |ds: &[Descriptor]| {
                    let mut cot = Vec::with_capacity(ds.len() * len);
                    for (k, d) in ds.iter().enumerate() {
                        let objective = objectives[k % n];
                        let refs = objective.references().len();
                        let scale = m.weight / (views * refs) as f32;
                        let mut c = vec![0f32; len];
                        dists[k] = objective.loss_and_grad(d, metric, scale, &mut c);
                        cot.extend(c);
                    }
                    cot
                })?;
            for (k, dist) in dists.iter().enumerate() {
                loss[k % n] += f64::from(m.weight) * dist / views as f64;
            }
            for (acc, v) in grad_views.iter_mut().zip(&g) {
                *acc += v;
            }
        }
        // Back through the views: the adjoint of the shift, then of the mirror.
        let mut grad = unshift(&grad_views[..n * plane], n, h, w, shift);
        if self.mirror {
            let back = mirrored(&unshift(&grad_views[n * plane..], n, h, w, shift), n, h, w);
            for (a, b) in grad.iter_mut().zip(back) {
                *a += b;
            }
        }
        Ok(LossAndGrad { loss, grad })
    }
}

/// Horizontal mirror of every item of an NCHW buffer (its own adjoint).
pub fn mirrored(x: &[f32], n: usize, h: usize, w: usize) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    for row in 0..n * 3 * h {
        let src = &x[row * w..(row + 1) * w];
        let dst = &mut out[row * w..(row + 1) * w];
        for (j, v) in src.iter().enumerate() {
            dst[w - 1 - j] = *v;
        }
    }
    out
}

/// Each item translated by `(dx, dy)` pixels, edges replicated:
/// `out[y][x] = in[clamp(y - dy)][clamp(x - dx)]`.
fn shifted(x: &[f32], n: usize, h: usize, w: usize, (dx, dy): (i32, i32)) -> Vec<f32> {
    if (dx, dy) == (0, 0) {
        return x.to_vec();
    }
    let mut out = vec![0f32; x.len()];
    for p in 0..n * 3 {
        let base = p * h * w;
        for y in 0..h {
            let sy = (y as i32 - dy).clamp(0, h as i32 - 1) as usize;
            for xx in 0..w {
                let sx = (xx as i32 - dx).clamp(0, w as i32 - 1) as usize;
                out[base + y * w + xx] = x[base + sy * w + sx];
            }
        }
    }
    out
}

/// The adjoint of [`shifted`]: each output gradient added back to the pixel it was read from.
fn unshift(g: &[f32], n: usize, h: usize, w: usize, (dx, dy): (i32, i32)) -> Vec<f32> {
    if (dx, dy) == (0, 0) {
        return g.to_vec();
    }
    let mut out = vec![0f32; g.len()];
    for p in 0..n * 3 {
        let base = p * h * w;
        for y in 0..h {
            let sy = (y as i32 - dy).clamp(0, h as i32 - 1) as usize;
            for xx in 0..w {
                let sx = (xx as i32 - dx).clamp(0, w as i32 - 1) as usize;
                out[base + sy * w + sx] += g[base + y * w + xx];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unshift_is_the_adjoint_of_shift() {
        let (n, h, w) = (2, 5, 6);
        let mut r = Rng::new(3);
        let x: Vec<f32> = (0..n * 3 * h * w).map(|_| r.uniform() as f32).collect();
        let g: Vec<f32> = (0..n * 3 * h * w)
            .map(|_| r.uniform() as f32 - 0.5)
            .collect();
        for s in [(0, 0), (2, -1), (-3, 4)] {
            let lhs: f64 = shifted(&x, n, h, w, s)
                .iter()
                .zip(&g)
                .map(|(a, b)| f64::from(a * b))
                .sum();
            let rhs: f64 = x
                .iter()
                .zip(unshift(&g, n, h, w, s))
                .map(|(a, b)| f64::from(a * b))
                .sum();
            assert!((lhs - rhs).abs() < 1e-4, "{s:?}: {lhs} vs {rhs}");
        }
        assert_eq!(mirrored(&mirrored(&x, n, h, w), n, h, w), x);
    }
}
