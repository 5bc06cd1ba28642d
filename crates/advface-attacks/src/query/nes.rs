//! Gradient estimation from black-box queries, with the students' gradient as a prior
//! (issue 6): the black box's answers correct the students' direction.
//!
//! Each iteration, at the current 8-bit image `x` whose black-box loss `f(x)` (the
//! objective under the metric: the mean L2 distance to the targets) is known:
//! 1. the prior: the ensemble's gradient of the same objective on its own descriptors
//!    (no query), and the last iteration's estimate (the black box's gradient changes
//!    slowly between iterates, so each estimate refines the last one instead of starting
//!    over);
//! 2. `directions` random directions (one fewer once there is a last estimate), Gaussian on
//!    a coarse grid (`tile x tile` pixel blocks, as the bandit and Square attacks use: far
//!    fewer dimensions than pixels), scaled at each pixel by how much change SSIM tolerates
//!    there (the original's local spread: more in textured regions, less in smooth ones;
//!    the students' gradient by its square, steepest descent in SSIM's metric); all made
//!    orthonormal (Gram-Schmidt), the priors first;
//! 3. one probe per direction, `x + probe * u` with the sign that does not lower SSIM,
//!    passed through the SSIM guard and rounded to 8 bits, asked of the black box in one
//!    call: each answer measures the directional derivative `<g, d_k> ~ f(x_k) - f(x)` along
//!    the probe's real displacement `d_k` (after rounding and guard);
//! 4. the estimate: the least-squares `g` in the span of the `d_k` that fits those
//!    measurements, i.e. the black box's gradient projected onto the probed subspace
//!    (with exact measurements never an ascent direction, whatever the prior's quality:
//!    a wrong prior costs one query, it does not mislead);
//! 5. a step of `step` grey levels (root mean square per pixel) down that estimate, through
//!    the guard, asked of the black box: the best of it and the probes is kept if it beats
//!    `f(x)`; the step grows by 1.25 after a success and halves (down to 1/8, then back)
//!    after a failure.
//!
//! Many directions per estimate beat many cheap estimates (BENCHMARKS.md): it is the SSIM
//! limit, not the number of steps, that runs out, and a noisy step spends SSIM for little.
//! [`NesConfig::directions_for_budget`] is the measured choice.
//!
//! The query budget is exact: every image asked is one query of the per-source budget, and
//! no call asks for more images than are left. Every image asked or kept holds the SSIM
//! limit plus the margin (the guard), as in the other attacks.

use advface_core::{Descriptor, Metric, Objective, Oracle, PixelBatch, RgbImage, SSIM_LIMIT};
use serde::{Deserialize, Serialize};

use super::{QueryAttack, QueryContext, QueryOutcome, Scorer};
use crate::ensemble::Ensemble;
use crate::guard::SsimGuard;
use crate::rng::Rng;
use crate::AttackError;

/// Settings of the student-guided estimator (a [`QueryAttack`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NesConfig {
    /// Random directions per estimate, besides the prior (default 16; see
    /// [`NesConfig::directions_for_budget`]).
    pub directions: usize,
    /// Use the students' gradient as the first direction (default `true`; `false` is plain
    /// random-direction estimation, the baseline the prior is measured against).
    pub prior: bool,
    /// Also probe the last estimate's direction (the black box's gradient changes slowly
    /// from one iterate to the next), in place of one random direction (default `true`;
    /// `false` when absent from a saved config: runs from before it did without).
    #[serde(default)]
    pub history: bool,
    /// Shape every direction by how much change SSIM tolerates where it falls (more in
    /// textured regions, less in smooth ones; the prior by its square, steepest descent in
    /// SSIM's own metric), so that a probe of a given length costs less SSIM (default
    /// `true`; `false` when absent from a saved config, as `history`).
    #[serde(default)]
    pub ssim_weighted: bool,
    /// Side of the blocks the random directions are constant over, pixels (default 8: a
    /// 14 x 14 x 3 grid at 112 px).
    pub tile: usize,
    /// Probe length, root mean square grey levels per pixel (default 2).
    pub probe: f32,
    /// Initial step, root mean square grey levels per pixel (default 2).
    pub step: f32,
    /// The protocol's SSIM limit (0.95).
    pub ssim_limit: f64,
    /// Safety margin above the limit that every image asked or kept holds (0.002).
    pub ssim_margin: f64,
    /// Seed of the random directions.
    pub seed: u64,
}

impl Default for NesConfig {
    fn default() -> Self {
        Self {
            directions: 16,
            prior: true,
            history: true,
            ssim_weighted: true,
            tile: 8,
            probe: 2.0,
            step: 2.0,
            ssim_limit: SSIM_LIMIT,
            ssim_margin: 0.002,
            seed: 0,
        }
    }
}

impl NesConfig {
    /// The number of random directions that did best at a budget of `budget` queries per
    /// image (LFW-MCS, first pairs): fewer, better estimates beat many noisy ones, because
    /// the SSIM limit, not the number of steps, is what runs out. 16 at 100 queries, about
    /// 50 at 1,000, at most 64.
    pub fn directions_for_budget(budget: u64) -> usize {
        ((1.6 * (budget as f64).sqrt()).round() as usize).clamp(6, 64)
    }
}

/// What the estimator returned before the query attacks shared one outcome.
pub type NesOutcome = QueryOutcome;

impl QueryAttack for NesConfig {
    fn name(&self) -> &'static str {
        "nes"
    }

    fn needs_students(&self) -> bool {
        self.prior
    }

    fn ssim_floor(&self) -> f64 {
        self.ssim_limit + self.ssim_margin
    }

    fn with_seed(&self, seed: u64) -> Box<dyn QueryAttack> {
        Box::new(Self {
            seed,
            ..self.clone()
        })
    }

    /// Estimates and steps from `start` until fewer than 2 queries are left;
    /// `iterations` counts estimates, `improved` those whose step or a probe improved the
    /// loss, `prior_share` the mean share of the estimates along the students' gradient.
    fn run(
        &self,
        ctx: &QueryContext<'_>,
        start: &RgbImage,
        start_loss: f64,
        budget: u64,
    ) -> Result<QueryOutcome, AttackError> {
        estimate(ctx, start, start_loss, self, budget)
    }
}

/// Student-guided gradient estimation towards `targets` (impersonation, L2) from a start
/// image whose black-box distance `start_distance` is known (no query spent on it);
/// `budget` queries at most: [`QueryAttack::run`] of `cfg`.
///
/// `original` is the protocol's crop (the SSIM reference), `start` an image holding the
/// limit (the original, or a transfer attack's result), `ensemble` the students (required
/// when `cfg.prior`).
///
/// # Errors
/// [`AttackError::BadInput`] for inputs that do not fit (sizes, descriptor lengths, a start
/// below the limit, a prior without students), and the oracle's and models' errors.
#[allow(clippy::too_many_arguments)]
pub fn nes_attack_from(
    original: &RgbImage,
    start: &RgbImage,
    start_distance: f64,
    targets: &[Descriptor],
    ensemble: Option<&Ensemble>,
    oracle: &dyn Oracle,
    cfg: &NesConfig,
    budget: u64,
) -> Result<QueryOutcome, AttackError> {
    let objective = Objective::impersonate(targets.to_vec());
    let ctx = QueryContext {
        original,
        objective: &objective,
        metric: &Metric::FACE_API,
        oracle,
        ensemble,
    };
    cfg.run(&ctx, start, start_distance, budget)
}

fn estimate(
    ctx: &QueryContext<'_>,
    start: &RgbImage,
    start_distance: f64,
    cfg: &NesConfig,
    budget: u64,
) -> Result<QueryOutcome, AttackError> {
    let (original, ensemble) = (ctx.original, ctx.ensemble);
    check(ctx.objective, ensemble, cfg)?;
    let limit = cfg.ssim_limit + cfg.ssim_margin;
    // checks the sizes, the targets and the start's SSIM; keeps the budget exact
    let mut scorer = Scorer::new(ctx, start, limit, budget)?;
    let (w, h) = (original.width() as usize, original.height() as usize);
    let plane = 3 * w * h;
    let guard = SsimGuard::new(original, limit)?;
    let mut rng = Rng::new(cfg.seed);
    let mut x = start.to_chw_f32();
    let mut image = start.clone();
    let mut fx = start_distance;
    let mut ssim = guard.ssim(start)?;
    let (mut iterations, mut improved) = (0u64, 0u64);
    let mut share_sum = 0f64;
    let base_step = cfg.step / 255.0 * (plane as f32).sqrt();
    let probe_len = cfg.probe / 255.0 * (plane as f32).sqrt();
    let mut scale = 1f32;
    let tolerance = cfg.ssim_weighted.then(|| guard.tolerance_chw());
    let shape = |mut v: Vec<f32>, power: i32| -> Vec<f32> {
        if let Some(t) = &tolerance {
            for (a, b) in v.iter_mut().zip(t) {
                *a *= b.powi(power);
            }
        }
        v
    };
    let mut last: Option<Vec<f32>> = None;
    // At least one probe and the step: an estimate needs two queries.
    while scorer.remaining() >= 2 {
        iterations += 1;
        // 1-2. Directions.
        let mut dirs: Vec<Vec<f32>> = Vec::with_capacity(cfg.directions + 1);
        if cfg.prior {
            let e = ensemble.expect("checked: a prior needs students");
            let batch = PixelBatch::new(1, h, w, x.clone())
                .map_err(|e| AttackError::BadInput(e.to_string()))?;
            let lg = e.loss_and_grad_objectives(&batch, &[ctx.objective], ctx.metric, &mut rng)?;
            // descend: the direction of steepest decrease of the students' loss
            dirs.push(shape(lg.grad.into_iter().map(|v| -v).collect(), 2));
        }
        let mut random = cfg.directions;
        if let Some(prev) = last.take() {
            dirs.push(prev);
            // in place of a random direction, unless it was the only one
            random -= usize::from(random > 1);
        }
        for _ in 0..random {
            dirs.push(shape(tiled_noise(w, h, cfg.tile.max(1), &mut rng), 1));
        }
        let (basis, _, kept) = orthonormal_kept(dirs);
        if basis.is_empty() {
            break;
        }
        // The prior is the first direction only if Gram-Schmidt kept it (a zero gradient,
        // say where the students' loss is flat, is dropped).
        let prior_kept = cfg.prior && kept.first() == Some(&0);
        // 3. Probes, each on the side that does not lower SSIM.
        let (_, sg) = guard.ssim_and_grad(&x)?;
        let room = (scorer.remaining() - 1) as usize;
        let mut probes = Vec::with_capacity(basis.len().min(room));
        let mut probe_x = Vec::with_capacity(basis.len().min(room));
        for u in basis.iter().take(room) {
            let ds: f64 = sg
                .iter()
                .enumerate()
                .map(|(j, v)| v * f64::from(u[(j % 3) * w * h + j / 3]))
                .sum();
            let sign = if ds < 0.0 { -1.0 } else { 1.0 };
            let cand: Vec<f32> = x
                .iter()
                .zip(u)
                .map(|(a, b)| a + sign * probe_len * b)
                .collect();
            let g = guard.enforce(&x, cand)?;
            if g.image != image {
                probes.push(g.image);
                probe_x.push((g.x, g.ssim));
            }
        }
        if probes.is_empty() {
            break;
        }
        let f = scorer.losses(&probes)?;
        // 4. Least squares on the real displacements.
        let cur = image.to_chw_f32();
        let disp: Vec<Vec<f32>> = probes
            .iter()
            .take(f.len())
            .map(|p| {
                p.to_chw_f32()
                    .iter()
                    .zip(&cur)
                    .map(|(a, b)| a - b)
                    .collect()
            })
            .collect();
        let m: Vec<f64> = f.iter().map(|v| v - fx).collect();
        let est = least_squares_in_span(&disp, &m);
        if prior_kept {
            let norm2: f64 = est.iter().map(|v| f64::from(*v).powi(2)).sum();
            if norm2 > 0.0 {
                let along: f64 = est
                    .iter()
                    .zip(&basis[0])
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum();
                share_sum += along * along / norm2;
            }
        }
        // 5. The step, and the best of it and the probes.
        let mut best: Option<(usize, f64)> = f
            .iter()
            .enumerate()
            .filter(|(_, v)| **v < fx)
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, v)| (i, *v));
        let mut stepped = None;
        let rms = (est.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>()).sqrt() as f32;
        if cfg.history && rms > 0.0 {
            // descend along it: the sign the next probe of it takes is set by SSIM anyway
            last = Some(est.iter().map(|v| -v).collect());
        }
        if rms > 0.0 && scorer.remaining() > 0 {
            let k = scale * base_step / rms;
            let cand: Vec<f32> = x.iter().zip(&est).map(|(a, g)| a - k * g).collect();
            let g = guard.enforce(&x, cand)?;
            if g.image != image {
                let fs = scorer.losses(std::slice::from_ref(&g.image))?;
                if let Some(&fs) = fs.first() {
                    if fs < fx && best.is_none_or(|b| fs < b.1) {
                        best = None;
                        stepped = Some((g, fs));
                    }
                }
            }
        }
        if let Some((g, fs)) = stepped {
            x = g.x;
            ssim = g.ssim;
            image = g.image;
            fx = fs;
            improved += 1;
            scale = (scale * 1.25).min(4.0);
        } else if let Some((i, fi)) = best {
            let (px, ps) = probe_x.swap_remove(i);
            x = px;
            ssim = ps;
            image = probes.swap_remove(i);
            fx = fi;
            improved += 1;
            scale *= 0.5;
        } else {
            scale *= 0.5;
        }
        if scale < 1.0 / 8.0 {
            scale = 1.0;
        }
    }
    Ok(QueryOutcome {
        image,
        loss: fx,
        start_loss: start_distance,
        ssim,
        queries: scorer.used(),
        iterations,
        improved,
        skipped: 0,
        prior_share: (cfg.prior && iterations > 0).then(|| share_sum / iterations as f64),
    })
}

fn check(
    objective: &Objective,
    ensemble: Option<&Ensemble>,
    cfg: &NesConfig,
) -> Result<(), AttackError> {
    if cfg.directions == 0 && !cfg.prior {
        return Err(AttackError::BadInput(
            "the estimator needs at least one direction: a prior or --directions > 0".into(),
        ));
    }
    if !(cfg.probe > 0.0 && cfg.probe.is_finite() && cfg.step > 0.0 && cfg.step.is_finite()) {
        return Err(AttackError::BadInput(format!(
            "probe and step must be positive grey levels, got {} and {}",
            cfg.probe, cfg.step
        )));
    }
    if cfg.prior {
        let Some(e) = ensemble else {
            return Err(AttackError::BadInput(
                "the students' prior needs students (or turn the prior off)".into(),
            ));
        };
        let want = objective.references().first().map_or(0, |t| t.len());
        if e.descriptor_len() != want {
            return Err(AttackError::BadInput(format!(
                "descriptor length mismatch: the students ({}) give {}, the targets have {}",
                e.names().join(", "),
                e.descriptor_len(),
                want
            )));
        }
    }
    Ok(())
}

/// Gaussian noise constant over `tile x tile` blocks, CHW, `[3, h, w]`.
fn tiled_noise(w: usize, h: usize, tile: usize, rng: &mut Rng) -> Vec<f32> {
    let (gw, gh) = (w.div_ceil(tile), h.div_ceil(tile));
    let grid: Vec<f32> = (0..3 * gw * gh).map(|_| gaussian(rng)).collect();
    let mut out = vec![0f32; 3 * w * h];
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                out[c * w * h + y * w + x] = grid[c * gw * gh + (y / tile) * gw + x / tile];
            }
        }
    }
    out
}

/// A standard normal draw (Box-Muller).
fn gaussian(rng: &mut Rng) -> f32 {
    let u1 = rng.uniform().max(f64::MIN_POSITIVE);
    let u2 = rng.uniform();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// Dot products of each of `rows` with `u` in f64, each summed in element order from the
/// same start as `Iterator::sum`: bit for bit what one `.map(|(a, b)| a * b).sum()` per row
/// gives. Four rows go through one pass, four independent sums: a sequential f64 sum is
/// bound by the adder's latency, not its throughput, and this is where the estimator spent
/// most of its own time (BENCHMARKS.md, "The estimator's arithmetic").
fn dots<T: Copy + Into<f64>>(rows: &[&[T]], u: &[f32]) -> Vec<f64> {
    let mut out = Vec::with_capacity(rows.len());
    let mut chunks = rows.chunks_exact(4);
    for c in &mut chunks {
        out.extend_from_slice(&dots4([c[0], c[1], c[2], c[3]], u));
    }
    for r in chunks.remainder() {
        out.push(
            r.iter()
                .zip(u)
                .map(|(a, b)| (*a).into() * f64::from(*b))
                .sum(),
        );
    }
    out
}

/// Four sums in four locals (an array here was kept on the stack, a store and a load in
/// every sum's chain).
#[inline(always)]
fn dots4<T: Copy + Into<f64>>(rows: [&[T]; 4], u: &[f32]) -> [f64; 4] {
    let n = u.len();
    let [r0, r1, r2, r3] = rows.map(|r| &r[..n]);
    // `Iterator::sum`'s own start (-0.0 in current Rust), so a sum of -0.0 terms agrees too.
    let zero = std::iter::empty::<f64>().sum::<f64>();
    let (mut a0, mut a1, mut a2, mut a3) = (zero, zero, zero, zero);
    for k in 0..n {
        let b = f64::from(u[k]);
        a0 += r0[k].into() * b;
        a1 += r1[k].into() * b;
        a2 += r2[k].into() * b;
        a3 += r3[k].into() * b;
    }
    [a0, a1, a2, a3]
}

/// Gram-Schmidt (twice, for stability) in the given order; vectors that are (numerically)
/// in the span of the earlier ones are dropped.
///
/// The classical order, vector by vector: both passes of a vector over every earlier
/// accepted one. The first pass of a later vector needs only the vectors accepted before
/// it, so it is done as each is accepted, for all later vectors at once (their dot
/// products side by side, [`dots`]); each vector still sees the same steps in the same
/// order, so the result is bit for bit the sequential one.
#[cfg(test)]
fn orthonormal(vs: Vec<Vec<f32>>) -> Vec<Vec<f32>> {
    orthonormal_kept(vs).0
}

/// Gram-Schmidt as `orthonormal` describes, with the f64 norm each kept vector had before it was normalised (every
/// step of the arithmetic shows in it: the tests compare it bit for bit) and the index in
/// `vs` of each kept vector.
fn orthonormal_kept(vs: Vec<Vec<f32>>) -> (Vec<Vec<f32>>, Vec<f64>, Vec<usize>) {
    let mut pending: Vec<(Vec<f64>, f64, usize)> = vs
        .into_iter()
        .enumerate()
        .filter_map(|(i, v)| {
            let v: Vec<f64> = v.into_iter().map(f64::from).collect();
            let n0 = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            (n0 > 0.0 && n0.is_finite()).then_some((v, n0, i))
        })
        .collect();
    let mut out: Vec<Vec<f32>> = Vec::with_capacity(pending.len());
    let mut norms = Vec::with_capacity(pending.len());
    let mut kept = Vec::with_capacity(pending.len());
    for h in 0..pending.len() {
        let (head, rest) = pending[h..].split_first_mut().expect("h < len");
        let (v, n0, index) = head;
        // its first pass over `out` was done as each was accepted; the second:
        for u in &out {
            let dot: f64 = v.iter().zip(u).map(|(a, b)| a * f64::from(*b)).sum();
            subtract_along(v, dot, u);
        }
        let n = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        if n > 1e-6 * *n0 {
            let u: Vec<f32> = v.iter().map(|a| (a / n) as f32).collect();
            // the first pass's step along `u` for every later vector
            let rows: Vec<&[f64]> = rest.iter().map(|(r, ..)| r.as_slice()).collect();
            let ds = dots(&rows, &u);
            for ((r, ..), dot) in rest.iter_mut().zip(ds) {
                subtract_along(r, dot, &u);
            }
            out.push(u);
            norms.push(n);
            kept.push(*index);
        }
    }
    (out, norms, kept)
}

/// One Gram-Schmidt step: `v -= dot * u`.
fn subtract_along(v: &mut [f64], dot: f64, u: &[f32]) {
    for (a, b) in v.iter_mut().zip(u) {
        *a -= dot * f64::from(*b);
    }
}

/// The minimum-norm `g` in the span of the rows `d` with `<g, d_k> = m_k` (least squares
/// when the rows are dependent): `g = D^T (D D^T + r I)^-1 m`, with a tiny ridge `r`.
fn least_squares_in_span(d: &[Vec<f32>], m: &[f64]) -> Vec<f32> {
    let q = d.len().min(m.len());
    if q == 0 {
        return Vec::new();
    }
    let len = d[0].len();
    let mut gram = gram(&d[..q]);
    let trace: f64 = (0..q).map(|i| gram[i * q + i]).sum();
    let ridge = 1e-9 * trace.max(f64::MIN_POSITIVE) / q as f64;
    for i in 0..q {
        gram[i * q + i] += ridge;
    }
    let alpha = solve_spd(gram, m[..q].to_vec(), q);
    let mut g = vec![0f32; len];
    for (row, a) in d.iter().zip(&alpha) {
        for (gv, dv) in g.iter_mut().zip(row) {
            *gv += (a * f64::from(*dv)) as f32;
        }
    }
    g
}

/// `D D^T` for the rows `d`, row-major `q x q`: row `i` against rows `0..=i` side by side.
fn gram(d: &[Vec<f32>]) -> Vec<f64> {
    let q = d.len();
    let mut gram = vec![0f64; q * q];
    let rows: Vec<&[f32]> = d.iter().map(Vec::as_slice).collect();
    for i in 0..q {
        for (j, v) in dots(&rows[..=i], &d[i]).into_iter().enumerate() {
            gram[i * q + j] = v;
            gram[j * q + i] = v;
        }
    }
    gram
}

/// Solves `a x = b` for a symmetric positive definite `q x q` matrix (Cholesky).
fn solve_spd(mut a: Vec<f64>, mut b: Vec<f64>, q: usize) -> Vec<f64> {
    for j in 0..q {
        let mut s = a[j * q + j];
        for k in 0..j {
            s -= a[j * q + k] * a[j * q + k];
        }
        let d = s.max(f64::MIN_POSITIVE).sqrt();
        a[j * q + j] = d;
        for i in j + 1..q {
            let mut s = a[i * q + j];
            for k in 0..j {
                s -= a[i * q + k] * a[j * q + k];
            }
            a[i * q + j] = s / d;
        }
    }
    for i in 0..q {
        let mut s = b[i];
        for k in 0..i {
            s -= a[i * q + k] * b[k];
        }
        b[i] = s / a[i * q + i];
    }
    for i in (0..q).rev() {
        let mut s = b[i];
        for k in i + 1..q {
            s -= a[k * q + i] * b[k];
        }
        b[i] = s / a[i * q + i];
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_squares_recovers_the_projection_of_a_linear_gradient() {
        let mut rng = Rng::new(3);
        let n = 50;
        let g: Vec<f32> = (0..n).map(|_| gaussian(&mut rng)).collect();
        // 5 non-orthogonal directions: the estimate is g projected onto their span
        let d: Vec<Vec<f32>> = (0..5)
            .map(|_| (0..n).map(|_| gaussian(&mut rng)).collect())
            .collect();
        let m: Vec<f64> = d
            .iter()
            .map(|r| r.iter().zip(&g).map(|(a, b)| f64::from(a * b)).sum())
            .collect();
        let est = least_squares_in_span(&d, &m);
        // it reproduces every measurement ...
        for (r, mk) in d.iter().zip(&m) {
            let v: f64 = r.iter().zip(&est).map(|(a, b)| f64::from(a * b)).sum();
            assert!((v - mk).abs() < 1e-4 * mk.abs().max(1.0), "{v} vs {mk}");
        }
        // ... and the residual g - est is orthogonal to the span
        let basis = orthonormal(d.clone());
        assert_eq!(basis.len(), 5);
        for u in &basis {
            let r: f64 = u
                .iter()
                .zip(g.iter().zip(&est))
                .map(|(a, (b, c))| f64::from(*a) * f64::from(b - c))
                .sum();
            assert!(r.abs() < 1e-4, "{r}");
        }
        // a projection is never an ascent direction
        let dot: f64 = g.iter().zip(&est).map(|(a, b)| f64::from(a * b)).sum();
        assert!(dot > 0.0);
    }

    #[test]
    fn a_saved_config_from_before_the_history_reads_as_without_it() {
        let old = r#"{"directions": 6, "prior": true, "tile": 8}"#;
        let cfg: NesConfig = serde_json::from_str(old).unwrap();
        assert!(!cfg.history && !cfg.ssim_weighted);
        assert_eq!(cfg.probe, NesConfig::default().probe);
        let new: NesConfig =
            serde_json::from_str(&serde_json::to_string(&NesConfig::default()).unwrap()).unwrap();
        assert_eq!(new, NesConfig::default());
    }

    #[test]
    fn directions_grow_with_the_budget_within_bounds() {
        assert_eq!(NesConfig::directions_for_budget(0), 6);
        assert_eq!(NesConfig::directions_for_budget(100), 16);
        assert_eq!(NesConfig::directions_for_budget(100_000), 64);
        let d: Vec<usize> = [10u64, 100, 500, 1000, 5000]
            .iter()
            .map(|&b| NesConfig::directions_for_budget(b))
            .collect();
        assert!(d.windows(2).all(|w| w[0] <= w[1]), "{d:?}");
    }

    #[test]
    fn orthonormal_drops_dependent_vectors() {
        let a = vec![1.0, 0.0, 0.0];
        let b = vec![2.0, 0.0, 0.0];
        let c = vec![1.0, 1.0, 0.0];
        let o = orthonormal(vec![a, b, c, vec![0.0; 3]]);
        assert_eq!(o.len(), 2);
        assert!((o[1][1] - 1.0).abs() < 1e-6 && o[1][0].abs() < 1e-6);
    }

    /// The sequential Gram-Schmidt and Gram matrix as they were before [`dots`]: the
    /// committed benchmark runs were made with these, so the fast ones must agree bit for bit.
    fn orthonormal_sequential(vs: Vec<Vec<f32>>) -> (Vec<Vec<f32>>, Vec<f64>) {
        let mut out: Vec<Vec<f32>> = Vec::with_capacity(vs.len());
        let mut norms = Vec::new();
        for v in vs {
            let mut v: Vec<f64> = v.into_iter().map(f64::from).collect();
            let n0 = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            if !(n0 > 0.0 && n0.is_finite()) {
                continue;
            }
            for _ in 0..2 {
                for u in &out {
                    let dot: f64 = v.iter().zip(u).map(|(a, b)| a * f64::from(*b)).sum();
                    for (a, b) in v.iter_mut().zip(u) {
                        *a -= dot * f64::from(*b);
                    }
                }
            }
            let n = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            if n > 1e-6 * n0 {
                out.push(v.into_iter().map(|a| (a / n) as f32).collect());
                norms.push(n);
            }
        }
        (out, norms)
    }

    fn gram_sequential(d: &[Vec<f32>]) -> Vec<f64> {
        let q = d.len();
        let mut gram = vec![0f64; q * q];
        for i in 0..q {
            for j in 0..=i {
                let v: f64 = d[i]
                    .iter()
                    .zip(&d[j])
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum();
                gram[i * q + j] = v;
                gram[j * q + i] = v;
            }
        }
        gram
    }

    fn bits(v: &[Vec<f32>]) -> Vec<Vec<u32>> {
        v.iter()
            .map(|r| r.iter().map(|x| x.to_bits()).collect())
            .collect()
    }

    /// Directions as the attack makes them (tiled noise), with a dependent vector, a zero
    /// one and a near-duplicate put in; counts of 8 to 55, multiples of 4 and not.
    fn directions(n: usize, w: usize, h: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = Rng::new(seed);
        let mut vs: Vec<Vec<f32>> = (0..n).map(|_| tiled_noise(w, h, 8, &mut rng)).collect();
        let dep: Vec<f32> = vs[0].iter().zip(&vs[1]).map(|(a, b)| 2.0 * a - b).collect();
        let near: Vec<f32> = vs[2].iter().map(|a| a * (1.0 + 1e-7)).collect();
        vs.insert(3, dep);
        vs.insert(5, vec![0.0; vs[0].len()]);
        vs.insert(7, near);
        vs
    }

    #[test]
    fn side_by_side_dot_products_match_sequential_sums_bit_for_bit() {
        let mut rng = Rng::new(9);
        let u: Vec<f32> = (0..1001).map(|_| gaussian(&mut rng)).collect();
        let rows: Vec<Vec<f64>> = (0..7)
            .map(|_| {
                (0..1001)
                    .map(|_| f64::from(gaussian(&mut rng)) * 1e3)
                    .collect()
            })
            .collect();
        let check = |rows: &[Vec<f64>], u: &[f32]| {
            let refs: Vec<&[f64]> = rows.iter().map(Vec::as_slice).collect();
            let got = dots(&refs, u);
            assert_eq!(got.len(), rows.len());
            for (r, g) in rows.iter().zip(&got) {
                let want: f64 = r.iter().zip(u).map(|(a, b)| a * f64::from(*b)).sum();
                assert_eq!(want.to_bits(), g.to_bits(), "{want} vs {g}");
            }
        };
        // 7 rows: one pass of four, then three one at a time
        check(&rows, &u);
        // every term -0.0 (rows of -0.0 against positive values): the sums' start shows
        let positive: Vec<f32> = u.iter().map(|v| v.abs() + 1.0).collect();
        check(&vec![vec![-0.0f64; 1001]; 5], &positive);
    }

    #[test]
    fn orthonormal_is_bit_for_bit_the_sequential_gram_schmidt() {
        for (n, seed) in [(5, 1), (6, 2), (16, 3), (51, 4)] {
            let vs = directions(n, 56, 56, seed);
            let (fast, fast_norms, _) = orthonormal_kept(vs.clone());
            let (slow, slow_norms) = orthonormal_sequential(vs);
            assert_eq!(bits(&fast), bits(&slow), "{n} directions");
            let b = |g: &[f64]| g.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(b(&fast_norms), b(&slow_norms), "{n} directions");
            // the zero, the dependent and the near-duplicate vector are dropped
            assert_eq!(fast.len(), n, "{n} directions");
        }
    }

    #[test]
    fn least_squares_gram_is_bit_for_bit_the_sequential_one() {
        let b = |g: &[f64]| g.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for (n, seed) in [(5, 5), (17, 6), (52, 7)] {
            let d = directions(n, 40, 40, seed);
            assert_eq!(b(&gram(&d)), b(&gram_sequential(&d)), "{n} rows");
        }
    }

    #[test]
    fn tiled_noise_is_constant_on_blocks() {
        let mut rng = Rng::new(1);
        let v = tiled_noise(10, 6, 4, &mut rng);
        assert_eq!(v.len(), 180);
        // pixels (0,0) and (3,3) share a block, (4,0) does not
        assert_eq!(v[0], v[3 * 10 + 3]);
        assert_ne!(v[0], v[4]);
        let mean = v.iter().sum::<f32>() / 180.0;
        assert!(mean.abs() < 1.0);
    }
}
