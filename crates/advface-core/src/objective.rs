//! The goal of an attack and the way descriptors are compared, as values.
//!
//! A [`Metric`] says how far apart two descriptors are and when the black box takes them
//! for the same person (face-api.js: L2 below 0.6). An [`Objective`] says what the attack
//! wants of the black box's descriptor of its image: to be taken for the target person
//! ([`Objective::Impersonate`], the MCS2018 task), or not to be taken for oneself
//! ([`Objective::Dodge`]). Its [`Objective::loss`] is what every attack minimises, the
//! gradient loop on the students' descriptors and the query attacks on the black box's.
//!
//! The L2 path computes exactly what the code did before these types existed (each
//! distance by [`Descriptor::l2`], summed in order as f64, divided by the count), so the
//! published runs reproduce bit for bit.

use serde::{Deserialize, Serialize};

use crate::Descriptor;

/// How two descriptors are compared, with the black box's same-person threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Metric {
    /// Euclidean distance; the same person when the distance is below `threshold`
    /// (face-api.js and dlib: 0.6).
    L2 {
        /// Same-person threshold on the distance.
        threshold: f64,
    },
    /// Cosine: distance `1 - cos(a, b)`; the same person when the similarity `cos(a, b)` is
    /// at least `threshold` (ArcFace-style models publish such a threshold).
    Cosine {
        /// Same-person threshold on the similarity, in `[-1, 1]`.
        threshold: f64,
    },
}

impl Default for Metric {
    /// [`Metric::FACE_API`].
    fn default() -> Self {
        Self::FACE_API
    }
}

impl Metric {
    /// The benchmark's black box, face-api.js: L2, same person below 0.6 (PROTOCOL.md). The
    /// threshold is the f64 0.6, not the f32 [`crate::MATCH_THRESHOLD`] widened
    /// (0.6000000238).
    pub const FACE_API: Metric = Metric::L2 { threshold: 0.6 };

    /// Whether this is [`Metric::FACE_API`] (for `skip_serializing_if`: records of runs
    /// with the default metric are written as before the metric existed).
    pub fn is_face_api(&self) -> bool {
        *self == Self::FACE_API
    }

    /// The same-person threshold (on the distance for L2, on the similarity for cosine).
    pub fn threshold(&self) -> f64 {
        match *self {
            Metric::L2 { threshold } | Metric::Cosine { threshold } => threshold,
        }
    }

    /// Short name for tables ("L2", "cosine").
    pub fn name(&self) -> &'static str {
        match self {
            Metric::L2 { .. } => "L2",
            Metric::Cosine { .. } => "cosine",
        }
    }

    /// Distance between two descriptors, lower is closer: L2 as [`Descriptor::l2`];
    /// cosine `1 - cos(a, b)` (in `[0, 2]`; 1 when either is zero).
    ///
    /// # Panics
    /// When the lengths differ (as [`Descriptor::l2`]).
    pub fn distance(&self, a: &Descriptor, b: &Descriptor) -> f64 {
        match self {
            Metric::L2 { .. } => a.l2(b),
            Metric::Cosine { .. } => 1.0 - cosine(a.as_slice(), b.as_slice()),
        }
    }

    /// Similarity, higher is closer: minus the distance for L2, `cos(a, b)` for cosine.
    pub fn similarity(&self, a: &Descriptor, b: &Descriptor) -> f64 {
        match self {
            Metric::L2 { .. } => -a.l2(b),
            Metric::Cosine { .. } => cosine(a.as_slice(), b.as_slice()),
        }
    }

    /// Whether a [`Metric::distance`] means the same person: L2 below the threshold,
    /// cosine distance at most `1 - threshold` (similarity at least the threshold).
    pub fn is_match(&self, distance: f64) -> bool {
        match *self {
            Metric::L2 { threshold } => distance < threshold,
            Metric::Cosine { threshold } => distance <= 1.0 - threshold,
        }
    }

    /// Whether the black box takes `a` and `b` for the same person.
    pub fn same_person(&self, a: &Descriptor, b: &Descriptor) -> bool {
        self.is_match(self.distance(a, b))
    }

    /// The distance of `a` to `b`, and `scale` times its gradient with respect to `a` added
    /// to `grad` (what a gradient attack back-propagates through a model).
    ///
    /// L2: the gradient is `(a - b) / |a - b|` (0 where the distance is 0), in f32, exactly
    /// as the gradient loop computed it before this type existed.
    ///
    /// # Shapes
    /// `a`, `b`, `grad`: one length.
    pub fn distance_and_grad(
        &self,
        a: &Descriptor,
        b: &Descriptor,
        scale: f32,
        grad: &mut [f32],
    ) -> f64 {
        match self {
            Metric::L2 { .. } => {
                let dist = a.l2(b);
                let inv = if dist > 0.0 { 1.0 / dist as f32 } else { 0.0 };
                for ((cv, x), y) in grad.iter_mut().zip(a.as_slice()).zip(b.as_slice()) {
                    *cv += (x - y) * inv * scale;
                }
                dist
            }
            Metric::Cosine { .. } => {
                let (a, b) = (a.as_slice(), b.as_slice());
                assert_eq!(a.len(), b.len(), "descriptor length mismatch");
                let na = norm(a);
                let nb = norm(b);
                if na == 0.0 || nb == 0.0 {
                    return 1.0;
                }
                let cos = dot(a, b) / (na * nb);
                // d(1 - cos)/da = -(b / (|a| |b|) - cos a / |a|^2)
                for ((g, x), y) in grad.iter_mut().zip(a).zip(b) {
                    let d = -(f64::from(*y) / (na * nb) - cos * f64::from(*x) / (na * na));
                    *g += (d * f64::from(scale)) as f32;
                }
                1.0 - cos
            }
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum()
}

fn norm(a: &[f32]) -> f64 {
    dot(a, a).sqrt()
}

/// `cos(a, b)`, 0 when either is zero.
fn cosine(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "descriptor length mismatch");
    let (na, nb) = (norm(a), norm(b));
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    dot(a, b) / (na * nb)
}

/// Mean distance of `d` to `references` under `metric`, summed in order as f64 (the MCS2018
/// loss of one image for L2 and the targets).
///
/// # Panics
/// When `references` is empty or a length differs (the attacks check both first).
pub fn mean_distance(d: &Descriptor, references: &[Descriptor], metric: &Metric) -> f64 {
    assert!(!references.is_empty(), "mean distance to no descriptors");
    references
        .iter()
        .map(|t| metric.distance(d, t))
        .sum::<f64>()
        / references.len() as f64
}

/// What an attack wants the black box to say of its image.
#[derive(Debug, Clone, PartialEq)]
pub enum Objective {
    /// Be taken for the target person (MCS2018): minimise the mean distance to the
    /// black box's descriptors of the target images.
    Impersonate {
        /// The target person's descriptors (5 in the protocol), one length.
        targets: Vec<Descriptor>,
    },
    /// Not be taken for oneself: move away from the black box's descriptors of the source
    /// person's own images (maximise the mean distance to them). The seam only: the
    /// runner and the CLI build impersonation; the dodging goal is built on this.
    Dodge {
        /// The source person's own descriptors, one length.
        sources: Vec<Descriptor>,
    },
}

impl Objective {
    /// [`Objective::Impersonate`].
    pub fn impersonate(targets: Vec<Descriptor>) -> Self {
        Objective::Impersonate { targets }
    }

    /// [`Objective::Dodge`].
    pub fn dodge(sources: Vec<Descriptor>) -> Self {
        Objective::Dodge { sources }
    }

    /// The descriptors the loss is measured against (the targets, or the source's own).
    pub fn references(&self) -> &[Descriptor] {
        match self {
            Objective::Impersonate { targets } => targets,
            Objective::Dodge { sources } => sources,
        }
    }

    /// Whether the loss moves away from the references (dodging) rather than towards them.
    pub fn moves_away(&self) -> bool {
        matches!(self, Objective::Dodge { .. })
    }

    /// The references' common length; `Err` says what is wrong (none, an empty one,
    /// lengths that differ).
    pub fn descriptor_len(&self) -> Result<usize, String> {
        let refs = self.references();
        let Some(first) = refs.first() else {
            return Err(match self {
                Objective::Impersonate { .. } => "no target descriptors".into(),
                Objective::Dodge { .. } => "no source descriptors to dodge".into(),
            });
        };
        if first.is_empty() {
            return Err("an empty descriptor".into());
        }
        if let Some(t) = refs.iter().find(|t| t.len() != first.len()) {
            let what = match self {
                Objective::Impersonate { .. } => "target",
                Objective::Dodge { .. } => "source",
            };
            return Err(format!(
                "{what} descriptors of different lengths: {} and {}",
                first.len(),
                t.len()
            ));
        }
        Ok(first.len())
    }

    /// The mean distance of `d` to the references ([`mean_distance`]).
    pub fn mean_distance(&self, d: &Descriptor, metric: &Metric) -> f64 {
        mean_distance(d, self.references(), metric)
    }

    /// The loss to minimise for descriptor `d`: the mean distance to the targets when
    /// impersonating; minus the mean distance to the source's own descriptors when dodging.
    pub fn loss(&self, d: &Descriptor, metric: &Metric) -> f64 {
        let m = self.mean_distance(d, metric);
        if self.moves_away() {
            -m
        } else {
            m
        }
    }

    /// Whether `d` reaches the goal: impersonating, the black box takes it for the target
    /// person against every target descriptor; dodging, against none of the source's own.
    pub fn reached(&self, d: &Descriptor, metric: &Metric) -> bool {
        let mut same = self.references().iter().map(|r| metric.same_person(d, r));
        match self {
            Objective::Impersonate { .. } => same.all(|s| s),
            Objective::Dodge { .. } => !same.any(|s| s),
        }
    }

    /// The loss of `d`, and the gradient of the mean distance's terms added to `grad`, each
    /// reference's term times `per_reference_scale` (the caller divides its weight by the
    /// number of references once, in f32, as the ensemble always did). For impersonation the
    /// arithmetic is that of the gradient loop before this type existed: per reference
    /// [`Metric::distance_and_grad`], the distances summed in order and divided by their
    /// count. Dodging negates the scale and the loss.
    pub fn loss_and_grad(
        &self,
        d: &Descriptor,
        metric: &Metric,
        per_reference_scale: f32,
        grad: &mut [f32],
    ) -> f64 {
        let refs = self.references();
        let scale = if self.moves_away() {
            -per_reference_scale
        } else {
            per_reference_scale
        };
        let mut sum = 0f64;
        for t in refs {
            sum += metric.distance_and_grad(d, t, scale, grad);
        }
        let m = sum / refs.len() as f64;
        if self.moves_away() {
            -m
        } else {
            m
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(v: &[f32]) -> Descriptor {
        Descriptor(v.to_vec())
    }

    #[test]
    fn face_api_metric_is_l2_below_0_6() {
        let m = Metric::default();
        assert!(m.is_face_api());
        assert_eq!(m.threshold(), 0.6);
        // the f64 0.6 narrows to the f32 constant
        assert_eq!(m.threshold() as f32, crate::MATCH_THRESHOLD);
        assert_eq!(m.distance(&d(&[0.0, 0.0]), &d(&[3.0, 4.0])), 5.0);
        assert!(m.same_person(&d(&[0.0]), &d(&[0.59])));
        assert!(!m.same_person(&d(&[0.0]), &d(&[0.6])));
        assert!(!m.is_match(0.6) && m.is_match(0.5999));
    }

    #[test]
    fn the_l2_path_is_bit_for_bit_the_loss_it_replaced() {
        // the loss before Metric and Objective: l2 summed in order, divided by the count
        let x = d(&[0.1, -0.7, 0.33, 0.25]);
        let targets: Vec<Descriptor> = (0..5)
            .map(|k| d(&[0.01 * k as f32, 0.2, -0.3 * k as f32, 0.9]))
            .collect();
        let old = targets.iter().map(|t| x.l2(t)).sum::<f64>() / targets.len() as f64;
        let obj = Objective::impersonate(targets.clone());
        let m = Metric::FACE_API;
        assert_eq!(obj.loss(&x, &m).to_bits(), old.to_bits());
        assert_eq!(mean_distance(&x, &targets, &m).to_bits(), old.to_bits());
        // the gradient as the ensemble computed it
        let scale = 0.5f32 / 5.0;
        let mut want = vec![0f32; 4];
        let mut sum = 0f64;
        for t in &targets {
            let dist = x.l2(t);
            sum += dist;
            let inv = if dist > 0.0 { 1.0 / dist as f32 } else { 0.0 };
            for ((cv, a), b) in want.iter_mut().zip(x.as_slice()).zip(t.as_slice()) {
                *cv += (a - b) * inv * scale;
            }
        }
        let mut got = vec![0f32; 4];
        let loss = obj.loss_and_grad(&x, &m, scale, &mut got);
        assert_eq!(loss.to_bits(), (sum / 5.0).to_bits());
        let bits = |v: &[f32]| v.iter().map(|a| a.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want));
    }

    #[test]
    fn dodge_loss_falls_as_the_descriptor_moves_away_from_the_source() {
        let own = vec![d(&[1.0, 0.0]), d(&[0.9, 0.1])];
        let obj = Objective::dodge(own);
        let m = Metric::FACE_API;
        let near = d(&[1.0, 0.05]);
        let far = d(&[-1.0, 0.5]);
        assert!(obj.loss(&far, &m) < obj.loss(&near, &m));
        assert!(obj.loss(&near, &m) < 0.0);
        assert!(!obj.reached(&near, &m) && obj.reached(&far, &m));
        // its gradient points towards the sources: a descent step moves away from them
        let mut g = vec![0f32; 2];
        let loss = obj.loss_and_grad(&near, &m, 0.5, &mut g);
        assert_eq!(loss.to_bits(), obj.loss(&near, &m).to_bits());
        let stepped = d(&[near.0[0] - 0.1 * g[0], near.0[1] - 0.1 * g[1]]);
        assert!(obj.loss(&stepped, &m) < loss);
    }

    #[test]
    fn impersonation_is_reached_when_every_target_matches() {
        let obj = Objective::impersonate(vec![d(&[0.0, 0.0]), d(&[0.5, 0.0])]);
        let m = Metric::FACE_API;
        assert!(obj.reached(&d(&[0.25, 0.0]), &m));
        assert!(!obj.reached(&d(&[-0.2, 0.0]), &m));
    }

    #[test]
    fn cosine_distance_similarity_and_gradient() {
        let m = Metric::Cosine { threshold: 0.5 };
        let a = d(&[1.0, 0.0]);
        assert!((m.distance(&a, &d(&[2.0, 0.0]))).abs() < 1e-12);
        assert!((m.distance(&a, &d(&[0.0, 3.0])) - 1.0).abs() < 1e-12);
        assert!((m.similarity(&a, &d(&[1.0, 1.0])) - 0.5f64.sqrt()).abs() < 1e-12);
        assert!(m.same_person(&a, &d(&[1.0, 1.0])));
        assert!(!m.same_person(&a, &d(&[0.1, 1.0])));
        // the gradient against finite differences
        let x = d(&[0.3, -0.8, 0.5]);
        let t = d(&[0.9, 0.1, -0.2]);
        let mut g = vec![0f32; 3];
        let dist = m.distance_and_grad(&x, &t, 1.0, &mut g);
        assert!((dist - m.distance(&x, &t)).abs() < 1e-12);
        for (k, gk) in g.iter().enumerate() {
            let mut xp = x.clone();
            xp.0[k] += 1e-3;
            let mut xm = x.clone();
            xm.0[k] -= 1e-3;
            let fd = (m.distance(&xp, &t) - m.distance(&xm, &t)) / 2e-3;
            assert!((fd - f64::from(*gk)).abs() < 1e-3, "{k}: {fd} vs {gk}");
        }
    }

    #[test]
    fn bad_references_are_named() {
        assert!(Objective::impersonate(vec![]).descriptor_len().is_err());
        let e = Objective::dodge(vec![d(&[1.0]), d(&[1.0, 2.0])])
            .descriptor_len()
            .unwrap_err();
        assert!(e.contains("source descriptors of different lengths"), "{e}");
        assert_eq!(
            Objective::impersonate(vec![d(&[1.0, 2.0])]).descriptor_len(),
            Ok(2)
        );
    }

    #[test]
    fn metric_serialises_with_its_kind() {
        let j = serde_json::to_string(&Metric::FACE_API).unwrap();
        assert_eq!(j, r#"{"kind":"l2","threshold":0.6}"#);
        let c: Metric = serde_json::from_str(r#"{"kind":"cosine","threshold":0.4}"#).unwrap();
        assert_eq!(c, Metric::Cosine { threshold: 0.4 });
    }
}
