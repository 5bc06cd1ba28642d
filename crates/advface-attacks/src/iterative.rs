//! The one iterative loop every gradient attack runs; the parts (gradient source, step rule,
//! objective, acceptance, SSIM guard) come from the config.

use std::sync::Arc;

use advface_core::{Descriptor, Metric, Objective, Oracle, PixelBatch, RgbImage, SSIM_LIMIT};
use advface_oracle::Budgeted;
use serde::{Deserialize, Serialize};

use crate::combos::target_combinations;
use crate::ensemble::Ensemble;
use crate::guard::SsimGuard;
use crate::rng::Rng;
use crate::step::StepRule;
use crate::AttackError;

/// A black box as one source image sees it: the shared oracle behind that source's own
/// budget, so the count per image is exact whatever the other sources and pairs do.
pub type SourceOracle = Budgeted<Arc<dyn Oracle>>;

/// Whether the black box judges the steps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Acceptance {
    /// Pure transfer: every step the guard lets through is kept; no query beyond the
    /// target descriptors.
    None,
    /// 2nd place: a step (or `check_every` steps together) is kept only if the black box's
    /// mean distance to the targets improves; after `patience` refusals in a row the step is
    /// forced; each refusal halves the step (down to 1/16, then back to the full step).
    BlackBox {
        /// Refusals in a row before a step is forced (2nd place: patience).
        patience: usize,
        /// Gradient steps between two queries; 0 chooses it from the budget so that the
        /// queries last all the steps.
        check_every: usize,
        /// Halve the step after a refusal (adaptive epsilon).
        adaptive: bool,
    },
}

/// Configuration of the loop. Defaults: FGVM with the 2nd-place heuristics, 200 steps, the
/// target combinations cycled, SSIM held at 0.95 + 0.002.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackConfig {
    /// The step rule.
    pub rule: StepRule,
    /// Gradient steps per source image.
    pub steps: usize,
    /// Cycle through the 31 combinations of targets (2nd place); otherwise aim at the mean
    /// of all targets every step.
    pub cycle_combinations: bool,
    /// The protocol's SSIM limit (0.95).
    pub ssim_limit: f64,
    /// Safety margin above the limit that candidates must keep (0.002).
    pub ssim_margin: f64,
    /// Stop a source at the first step the SSIM limit cuts (the organisers' FGSM baseline).
    pub stop_at_ssim_failure: bool,
    /// Penalty weight on `max(0, limit + 0.01 - SSIM)` added to the loss (Carlini-Wagner
    /// style, for the Adam rule); 0 for none.
    pub ssim_penalty: f64,
    /// Black-box acceptance.
    pub acceptance: Acceptance,
    /// Seed of every random choice (input diversity).
    pub seed: u64,
}

impl Default for AttackConfig {
    fn default() -> Self {
        Self {
            rule: StepRule::fgvm(),
            steps: 200,
            cycle_combinations: true,
            ssim_limit: SSIM_LIMIT,
            ssim_margin: 0.002,
            stop_at_ssim_failure: false,
            ssim_penalty: 0.0,
            acceptance: Acceptance::None,
            seed: 0,
        }
    }
}

pub use advface_eval::record::SourceOutcome;

/// The result of attacking one pair.
#[derive(Debug, Clone)]
pub struct PairOutcome {
    /// One adversarial image per source, in order; each satisfies the SSIM limit.
    pub images: Vec<RgbImage>,
    /// One outcome per source.
    pub sources: Vec<SourceOutcome>,
}

struct Source {
    guard: SsimGuard,
    x: Vec<f32>,
    image: RgbImage,
    ssim: f64,
    rule_state: crate::step::StepState,
    scale: f32,
    done: bool,
    steps: usize,
    since_check: usize,
    // The last state the black box accepted, to return to after a refusal.
    committed: Option<(Vec<f32>, RgbImage, f64, crate::step::StepState)>,
    committed_dist: f64,
    best: Option<(RgbImage, f64, f64)>,
    fails: usize,
    outcome: SourceOutcome,
}

impl Source {
    /// Makes the current state the one to return to after a refusal.
    fn commit(&mut self, dist: f64) {
        self.committed_dist = dist;
        self.committed = Some((
            self.x.clone(),
            self.image.clone(),
            self.ssim,
            self.rule_state.clone(),
        ));
        self.fails = 0;
    }
}

/// Mean L2 distance of a descriptor to every target: the impersonation loss under
/// face-api.js's metric ([`advface_core::mean_distance`] with [`Metric::FACE_API`]).
///
/// # Panics
/// When `targets` is empty or a length differs.
pub fn mean_distance(d: &Descriptor, targets: &[Descriptor]) -> f64 {
    advface_core::mean_distance(d, targets, &Metric::FACE_API)
}

fn mean_descriptor(targets: &[Descriptor], subset: &[usize]) -> Descriptor {
    let len = targets[0].len();
    let mut m = vec![0f32; len];
    for &i in subset {
        for (a, b) in m.iter_mut().zip(targets[i].as_slice()) {
            *a += b;
        }
    }
    let k = subset.len() as f32;
    Descriptor(m.into_iter().map(|v| v / k).collect())
}

/// The objective of gradient step `step`: impersonation aims at the mean of one
/// combination of the targets (all of them without cycling); dodging moves away from the
/// source's own descriptors every step.
fn step_objective(objective: &Objective, combos: &[Vec<usize>], step: usize) -> Objective {
    match objective {
        Objective::Impersonate { targets } => {
            Objective::impersonate(vec![mean_descriptor(targets, &combos[step % combos.len()])])
        }
        Objective::Dodge { .. } => objective.clone(),
    }
}

/// Attacks the sources of one pair towards `objective` (impersonation: the black box's
/// descriptors of the target images) under `metric`.
///
/// `oracles` holds one budgeted black box per source (the target descriptors already
/// charged to them), needed for black-box acceptance and used to report each image's
/// queries; `pair` seeds the random choices together with the config's seed.
pub fn attack_pair(
    sources: &[RgbImage],
    objective: &Objective,
    metric: &Metric,
    ensemble: &Ensemble,
    oracles: Option<&[SourceOracle]>,
    cfg: &AttackConfig,
    pair: u64,
) -> Result<PairOutcome, AttackError> {
    let targets = objective.references();
    if sources.is_empty() || targets.is_empty() {
        return Err(AttackError::BadInput(format!(
            "a pair needs sources and targets, got {} and {}",
            sources.len(),
            targets.len()
        )));
    }
    let (w, h) = (sources[0].width() as usize, sources[0].height() as usize);
    if let Some(s) = sources
        .iter()
        .find(|s| (s.width() as usize, s.height() as usize) != (w, h))
    {
        return Err(AttackError::BadInput(format!(
            "source images differ in size: {}x{} and {}x{}",
            w,
            h,
            s.width(),
            s.height()
        )));
    }
    let len = ensemble.descriptor_len();
    if let Some(t) = targets.iter().find(|t| t.len() != len) {
        return Err(AttackError::BadInput(format!(
            "descriptor length mismatch: the black box's target descriptors have {} \
             components, the students ({}) give {len}",
            t.len(),
            ensemble.names().join(", ")
        )));
    }
    let check = match cfg.acceptance {
        Acceptance::None => None,
        Acceptance::BlackBox {
            patience,
            check_every,
            adaptive,
        } => {
            let oracles = oracles.ok_or_else(|| {
                AttackError::BadInput("black-box acceptance needs a black box".into())
            })?;
            if oracles.len() != sources.len() {
                return Err(AttackError::BadInput(format!(
                    "{} black-box budgets for {} sources",
                    oracles.len(),
                    sources.len()
                )));
            }
            Some((oracles, patience.max(1), check_every, adaptive))
        }
    };
    let limit = cfg.ssim_limit + cfg.ssim_margin;
    let plane = 3 * w * h;
    let mut states = Vec::with_capacity(sources.len());
    for (i, s) in sources.iter().enumerate() {
        let x = s.to_chw_f32();
        states.push(Source {
            guard: SsimGuard::new(s, limit)?,
            rule_state: cfg.rule.state(plane),
            x,
            image: s.clone(),
            ssim: 1.0,
            scale: 1.0,
            done: false,
            steps: 0,
            since_check: 0,
            committed: None,
            committed_dist: f64::INFINITY,
            best: None,
            fails: 0,
            outcome: SourceOutcome::untouched(
                oracles.map_or(0, |o| o.get(i).map_or(0, |o| o.used())),
            ),
        });
    }
    // The clean images' distances, the baseline every step must beat.
    if let Some((oracles, ..)) = check {
        for (st, o) in states.iter_mut().zip(oracles) {
            if o.remaining() == 0 {
                st.done = true;
                continue;
            }
            let d = o.describe(std::slice::from_ref(&st.image))?;
            let dist = objective.loss(&d[0], metric);
            st.committed_dist = dist;
            st.outcome.blackbox_before = Some(dist);
            st.best = Some((st.image.clone(), dist, 1.0));
            st.committed = Some((
                st.x.clone(),
                st.image.clone(),
                st.ssim,
                st.rule_state.clone(),
            ));
        }
    }
    let combos = if cfg.cycle_combinations {
        target_combinations(targets.len())
    } else {
        vec![(0..targets.len()).collect()]
    };
    // The record's surrogate loss: impersonation, towards the mean of all targets.
    let whole = step_objective(objective, &[(0..targets.len()).collect()], 0);
    let mut rng = Rng::derive(cfg.seed, pair);
    for step in 0..cfg.steps {
        let active: Vec<usize> = (0..states.len()).filter(|&i| !states[i].done).collect();
        if active.is_empty() {
            break;
        }
        let aim = step_objective(objective, &combos, step);
        let mut input = Vec::with_capacity(active.len() * plane);
        for &i in &active {
            let st = &states[i];
            match cfg.rule.lookahead(&st.rule_state, &st.x) {
                Some(x) => input.extend(x),
                None => input.extend_from_slice(&st.x),
            }
        }
        let batch = PixelBatch::new(active.len(), h, w, input)
            .map_err(|e| AttackError::BadInput(e.to_string()))?;
        let lg = ensemble.loss_and_grad_objectives(
            &batch,
            &vec![&aim; active.len()],
            metric,
            &mut rng,
        )?;
        for (k, &i) in active.iter().enumerate() {
            let st = &mut states[i];
            if st.outcome.surrogate_before.is_none() {
                st.outcome.surrogate_before = Some(lg.loss[k]);
            }
            let mut g = lg.grad[k * plane..(k + 1) * plane].to_vec();
            if cfg.ssim_penalty > 0.0 {
                let (s, sg) = st.guard.ssim_and_grad(&st.x)?;
                if s < cfg.ssim_limit + 0.01 {
                    // d(-penalty * SSIM)/dx in [0, 1] units; SSIM's gradient is per grey level.
                    let p = w * h;
                    for (j, v) in sg.iter().enumerate() {
                        let idx = (j % 3) * p + j / 3;
                        g[idx] -= (cfg.ssim_penalty * v * 255.0) as f32;
                    }
                }
            }
            let delta = cfg.rule.delta(&mut st.rule_state, &g, st.scale);
            let cand: Vec<f32> = st.x.iter().zip(&delta).map(|(a, d)| a + d).collect();
            let guarded = st.guard.enforce(&st.x, cand)?;
            // The limit cut the step when the guard shrank it or had to repair it along the
            // SSIM gradient (a repair keeps the whole step but moves it back).
            if cfg.stop_at_ssim_failure && (guarded.kept < 1.0 || guarded.repaired) {
                st.done = true;
                continue;
            }
            st.x = guarded.x;
            st.image = guarded.image;
            st.ssim = guarded.ssim;
            st.steps += 1;
            st.since_check += 1;
        }
        // Black-box checks.
        if let Some((oracles, patience, check_every, adaptive)) = check {
            for &i in &active {
                let st = &mut states[i];
                if st.done || st.since_check == 0 {
                    continue;
                }
                let o = &oracles[i];
                let left_steps = (cfg.steps - step - 1) as u64 + 1;
                let every = if check_every > 0 {
                    check_every as u64
                } else {
                    left_steps.div_ceil(o.remaining().max(1))
                };
                if (st.since_check as u64) < every && step + 1 < cfg.steps {
                    continue;
                }
                if o.remaining() == 0 {
                    st.done = true;
                    continue;
                }
                st.since_check = 0;
                let d = o.describe(std::slice::from_ref(&st.image))?;
                let dist = objective.loss(&d[0], metric);
                if st.best.as_ref().is_none_or(|b| dist < b.1) {
                    st.best = Some((st.image.clone(), dist, st.ssim));
                }
                if dist < st.committed_dist {
                    st.commit(dist);
                    st.outcome.accepted += 1;
                } else {
                    st.fails += 1;
                    st.outcome.refused += 1;
                    if st.fails >= patience {
                        // Forced step: go on from here although it is no better.
                        st.commit(dist);
                        st.outcome.forced += 1;
                    } else if let Some((x, im, s, rs)) = &st.committed {
                        st.x = x.clone();
                        st.image = im.clone();
                        st.ssim = *s;
                        st.rule_state = rs.clone();
                        if adaptive {
                            st.scale *= 0.5;
                            if st.scale < 1.0 / 16.0 {
                                st.scale = 1.0;
                            }
                        }
                    }
                }
            }
        }
    }
    // The results: the best image the black box saw, or the last state in pure transfer.
    let mut images = Vec::with_capacity(states.len());
    let mut last = Vec::with_capacity(states.len() * plane);
    for st in &mut states {
        let (image, ssim) = match &st.best {
            Some((im, dist, s)) => {
                st.outcome.blackbox_after = Some(*dist);
                (im.clone(), *s)
            }
            None => (st.image.clone(), st.ssim),
        };
        st.outcome.ssim = ssim;
        st.outcome.steps = st.steps;
        last.extend(image.to_chw_f32());
        images.push(image);
    }
    // The ensemble's distance of the results to the mean target, for the record.
    let batch = PixelBatch::new(states.len(), h, w, last)
        .map_err(|e| AttackError::BadInput(e.to_string()))?;
    let mut quiet = Ensemble::clone(ensemble);
    quiet.diversity = None;
    let lg =
        quiet.loss_and_grad_objectives(&batch, &vec![&whole; states.len()], metric, &mut rng)?;
    for (k, st) in states.iter_mut().enumerate() {
        st.outcome.surrogate_after = Some(lg.loss[k]);
        if st.outcome.surrogate_before.is_none() {
            st.outcome.surrogate_before = Some(lg.loss[k]);
        }
        if let Some(o) = oracles {
            st.outcome.queries = o[k].used();
        }
    }
    Ok(PairOutcome {
        images,
        sources: states.into_iter().map(|s| s.outcome).collect(),
    })
}
