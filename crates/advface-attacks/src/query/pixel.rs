//! The MCS2018 2nd-place few-pixel attack, on any black box.
//!
//! Rounds: each round starts from the best image so far and runs a scipy-style
//! differential evolution over `(row, col, R, G, B)` of `k` pixels (`5k` dimensions; rows
//! and columns in `[0, size)`, colours in `[0, 256)`, truncated to integers, as
//! one-pixel-attack implementations decode them). The loss of a candidate is the
//! objective on the black box's answer (the mean L2 distance to the targets), or a fixed
//! penalty (1e6) without a query when its SSIM against the original crop is below the
//! limit. Every generation's candidates are asked in one
//! [`advface_core::Oracle::describe`] call (deferred updating). The round's best image is
//! kept only when it improves on the image the round started from.
//!
//! The budget is exact: a batch is cut to the queries left, and the attack stops when none
//! are left.

use advface_core::{RgbImage, SSIM_LIMIT};
use advface_search::de::{differential_evolution, DeConfig, Init, Mutation, Strategy, Updating};
use advface_search::Rng;
use serde::{Deserialize, Serialize};

use super::{QueryAttack, QueryContext, QueryOutcome, Scorer};
use crate::AttackError;

/// Settings of the few-pixel attack (a [`QueryAttack`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PixelAttackConfig {
    /// Pixels changed per round, `k` (MCS2018 2nd place: 1, the one-pixel attack).
    pub pixels_per_round: usize,
    /// Rounds at most; `None` runs rounds until the budget is spent (MCS2018 2nd place:
    /// as many as the query budget allows).
    pub max_rounds: Option<usize>,
    /// DE population per dimension: `popsize * 5k` candidates (MCS2018 2nd place: 30, a
    /// population of 150 for one pixel).
    pub popsize: usize,
    /// DE generations per round after the initial population (MCS2018 2nd place: 3 to 4;
    /// default 3).
    pub maxiter: usize,
    /// DE strategy (MCS2018 2nd place: best1bin, scipy's default).
    pub strategy: Strategy,
    /// DE mutation (scipy's default, dithered in `[0.5, 1)`, which the 2nd place kept).
    pub mutation: Mutation,
    /// DE crossover probability (MCS2018 2nd place: 1, every dimension from the mutant, as
    /// in the one-pixel attack of Su et al.).
    pub recombination: f64,
    /// DE initial population (scipy's default, Latin hypercube).
    pub init: Init,
    /// The protocol's SSIM limit (0.95).
    pub ssim_limit: f64,
    /// Safety margin above the limit that every image asked or returned keeps (0.002, as
    /// the gradient attacks of advface-attacks).
    pub ssim_margin: f64,
    /// Loss of a candidate below the SSIM limit, given without a query (MCS2018 2nd
    /// place: 1e6).
    pub infeasible_loss: f64,
    /// Seed of every random draw (round `r` uses sub-stream `r`).
    pub seed: u64,
}

impl Default for PixelAttackConfig {
    fn default() -> Self {
        Self {
            pixels_per_round: 1,
            max_rounds: None,
            popsize: 30,
            maxiter: 3,
            strategy: Strategy::Best1Bin,
            mutation: Mutation::default(),
            recombination: 1.0,
            init: Init::LatinHypercube,
            ssim_limit: SSIM_LIMIT,
            ssim_margin: 0.002,
            infeasible_loss: 1e6,
            seed: 0,
        }
    }
}

impl QueryAttack for PixelAttackConfig {
    fn name(&self) -> &'static str {
        "pixel"
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

    /// Rounds of DE from `start` until the budget is spent (a budget of 0 returns the
    /// start image); `iterations` counts rounds (the last may be cut short by the budget),
    /// `improved` the rounds whose best image was kept, `skipped` the candidates given the
    /// penalty without a query.
    fn run(
        &self,
        ctx: &QueryContext<'_>,
        start: &RgbImage,
        start_loss: f64,
        budget: u64,
    ) -> Result<QueryOutcome, AttackError> {
        pixel_attack_from(ctx, start, start_loss, self, budget)
    }
}

fn pixel_attack_from(
    ctx: &QueryContext<'_>,
    start: &RgbImage,
    start_distance: f64,
    cfg: &PixelAttackConfig,
    budget: u64,
) -> Result<QueryOutcome, AttackError> {
    check(cfg)?;
    let limit = cfg.ssim_limit + cfg.ssim_margin;
    let mut scorer = Scorer::new(ctx, start, limit, budget)?;
    let (w, h) = (start.width(), start.height());
    let k = cfg.pixels_per_round;
    let bounds: Vec<(f64, f64)> = (0..k)
        .flat_map(|_| {
            [
                (0.0, f64::from(h)),
                (0.0, f64::from(w)),
                (0.0, 256.0),
                (0.0, 256.0),
                (0.0, 256.0),
            ]
        })
        .collect();
    let mut current = start.clone();
    let mut current_d = start_distance;
    let mut out = QueryOutcome {
        image: start.clone(),
        loss: start_distance,
        start_loss: start_distance,
        ssim: scorer.ssim(start)?,
        queries: 0,
        iterations: 0,
        improved: 0,
        skipped: 0,
        prior_share: None,
    };
    let mut round = 0usize;
    while scorer.remaining() > 0 && cfg.max_rounds.is_none_or(|m| round < m) {
        let base = current.clone();
        let used_before = scorer.used();
        let mut best: Option<(f64, RgbImage)> = None;
        let mut failure: Option<AttackError> = None;
        let de = DeConfig {
            strategy: cfg.strategy,
            popsize: cfg.popsize,
            maxiter: cfg.maxiter,
            // no convergence test: every generation of the few is run
            tol: 0.0,
            atol: -1.0,
            mutation: cfg.mutation,
            recombination: cfg.recombination,
            init: cfg.init,
            updating: Updating::Deferred,
            seed: Rng::derive(cfg.seed, round as u64).next_u64(),
            max_evals: None,
        };
        let objective = |xs: &[Vec<f64>]| -> Vec<f64> {
            match score_generation(&mut scorer, &base, xs, cfg.infeasible_loss) {
                Ok((energies, round_best, infeasible)) => {
                    out.skipped += infeasible;
                    if let Some((d, im)) = round_best {
                        if best.as_ref().is_none_or(|(b, _)| d < *b) {
                            best = Some((d, im));
                        }
                    }
                    energies
                }
                Err(e) => {
                    failure = Some(e);
                    Vec::new()
                }
            }
        };
        differential_evolution(objective, &bounds, &de)?;
        if let Some(e) = failure {
            return Err(e);
        }
        round += 1;
        if let Some((d, im)) = best {
            if d < current_d {
                current_d = d;
                current = im;
                out.improved += 1;
            }
        }
        if scorer.used() == used_before {
            // every candidate of the round was below the SSIM limit: the image has no
            // room left for this many pixels
            break;
        }
    }
    out.iterations = round as u64;
    out.queries = scorer.used();
    out.ssim = scorer.ssim(&current)?;
    out.loss = current_d;
    out.image = current;
    Ok(out)
}

fn check(cfg: &PixelAttackConfig) -> Result<(), AttackError> {
    if cfg.pixels_per_round == 0 {
        return Err(AttackError::BadInput(
            "invalid search settings: pixels_per_round must be at least 1".into(),
        ));
    }
    if !cfg.infeasible_loss.is_finite() {
        return Err(AttackError::BadInput(
            "invalid search settings: infeasible_loss must be finite (DE never converges \
             with infinite energies)"
                .into(),
        ));
    }
    Ok(())
}

/// The image of DE vector `x` (`5k` values: row, col, R, G, B per pixel) on `base`.
fn decode(base: &RgbImage, x: &[f64]) -> RgbImage {
    let (w, h) = (base.width() as usize, base.height() as usize);
    let mut im = base.clone();
    let bytes = im.as_bytes_mut();
    let int = |v: f64, n: usize| (v.max(0.0) as usize).min(n - 1);
    for p in x.chunks_exact(5) {
        let (row, col) = (int(p[0], h), int(p[1], w));
        let at = (row * w + col) * 3;
        for c in 0..3 {
            bytes[at + c] = int(p[2 + c], 256) as u8;
        }
    }
    im
}

/// Energies of one DE batch: the penalty for candidates below the SSIM limit, the black
/// box's loss for the others, asked in one call cut to the budget. The energies stop
/// at the first candidate the budget left unasked. Also returns the batch's best asked
/// image and the number of penalised candidates.
#[allow(clippy::type_complexity)]
fn score_generation(
    scorer: &mut Scorer<'_>,
    base: &RgbImage,
    xs: &[Vec<f64>],
    penalty: f64,
) -> Result<(Vec<f64>, Option<(f64, RgbImage)>, u64), AttackError> {
    let mut images = Vec::with_capacity(xs.len());
    let mut feasible = Vec::with_capacity(xs.len());
    for x in xs {
        let im = decode(base, x);
        feasible.push(scorer.ssim(&im)? >= scorer.limit());
        images.push(im);
    }
    let asked: Vec<RgbImage> = images
        .iter()
        .zip(&feasible)
        .filter(|(_, f)| **f)
        .map(|(im, _)| im.clone())
        .collect();
    let answers = scorer.losses(&asked)?;
    let mut energies = Vec::with_capacity(xs.len());
    let mut next = answers.iter();
    let mut best: Option<(f64, usize)> = None;
    let mut infeasible = 0;
    for (i, f) in feasible.iter().enumerate() {
        if *f {
            match next.next() {
                Some(&d) => {
                    if best.is_none_or(|(b, _)| d < b) {
                        best = Some((d, i));
                    }
                    energies.push(d);
                }
                None => break, // budget spent: the rest is not evaluated
            }
        } else {
            infeasible += 1;
            energies.push(penalty);
        }
    }
    let best = best.map(|(d, i)| (d, images.swap_remove(i)));
    Ok((energies, best, infeasible))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::test_oracles::{
        mean_distance, measured, noise_image, resumed, BumpOracle, CountingOracle, RegionOracle,
    };
    use advface_core::Oracle;

    #[test]
    fn decode_truncates_and_clamps() {
        let base = RgbImage::filled(4, 3, [9, 9, 9]);
        let im = decode(&base, &[2.99, 4.0, 255.7, 0.2, 256.0]);
        assert_eq!(
            [im.get(3, 2, 0), im.get(3, 2, 1), im.get(3, 2, 2)],
            [255, 0, 255]
        );
        let changed = im
            .as_bytes()
            .iter()
            .zip(base.as_bytes())
            .filter(|(a, b)| a != b);
        assert_eq!(changed.count(), 3);
    }

    #[test]
    fn de_finds_the_optimal_pixel_of_a_one_pixel_problem() {
        let oracle = BumpOracle::new(&noise_image(32, 32, 5), (20, 9), 2.5);
        let original = oracle.original().clone();
        let targets = vec![oracle.target()];
        let cfg = PixelAttackConfig {
            maxiter: 40,
            max_rounds: Some(1),
            seed: 1,
            ..PixelAttackConfig::default()
        };
        let out = measured(&cfg, &original, &original, &targets, &oracle, 20_000).unwrap();
        let diff: Vec<(u32, u32)> = (0..32)
            .flat_map(|y| (0..32).map(move |x| (x, y)))
            .filter(|&(x, y)| (0..3).any(|c| out.image.get(x, y, c) != original.get(x, y, c)))
            .collect();
        assert_eq!(diff, vec![(9, 20)], "changed pixels (x, y)");
        let px = [
            out.image.get(9, 20, 0),
            out.image.get(9, 20, 1),
            out.image.get(9, 20, 2),
        ];
        assert!(px[0] >= 250 && px[1] <= 5 && px[2] >= 250, "{px:?}");
        assert!(out.loss < 0.05 * out.start_loss, "{out:?}");
        assert_eq!(out.queries, oracle.stats().queries);
        assert_eq!(out.queries, 1 + 150 * 41);
    }

    #[test]
    fn the_budget_is_never_exceeded_and_every_image_holds_the_limit() {
        let original = noise_image(24, 24, 2);
        let mut goal = original.clone();
        for v in goal.as_bytes_mut().iter_mut().step_by(5) {
            *v = v.saturating_add(60);
        }
        for (k, budget) in [
            (1usize, 1u64),
            (1, 2),
            (1, 150),
            (1, 151),
            (1, 700),
            (2, 1000),
            (3, 333),
        ] {
            let oracle = CountingOracle::new(RegionOracle::new(3), &original, Some(budget));
            let targets = vec![RegionOracle::new(3).describe_one(&goal)];
            let cfg = PixelAttackConfig {
                pixels_per_round: k,
                ssim_margin: 0.0,
                seed: budget,
                ..PixelAttackConfig::default()
            };
            let out = measured(&cfg, &original, &original, &targets, &oracle, budget).unwrap();
            let log = oracle.log();
            assert_eq!(log.total, out.queries, "k {k} budget {budget}");
            assert!(log.total <= budget, "k {k}: {} > {budget}", log.total);
            assert_eq!(log.total, budget, "the attack spends its whole budget");
            assert!(log.min_ssim >= 0.95, "asked SSIM {}", log.min_ssim);
            assert!(out.ssim >= 0.95);
            let d = mean_distance(&RegionOracle::new(3).describe_one(&out.image), &targets);
            assert!((d - out.loss).abs() < 1e-12);
            assert!(out.loss <= out.start_loss);
        }
    }

    #[test]
    fn the_loss_decreases_on_an_easy_problem() {
        // 16 cells of 36 pixels: one pixel moves a cell's mean by up to 7 grey levels
        let original = noise_image(24, 24, 8);
        let mut goal = original.clone();
        for v in goal.as_bytes_mut().iter_mut() {
            *v = v.saturating_add(20);
        }
        let oracle = RegionOracle::new(4);
        let targets = vec![oracle.describe_one(&goal)];
        let cfg = PixelAttackConfig::default();
        let out = measured(&cfg, &original, &original, &targets, &oracle, 6_001).unwrap();
        assert_eq!(out.iterations, 10);
        assert!(out.improved >= 8, "{out:?}");
        assert!(out.loss < 0.9 * out.start_loss, "{out:?}");
        assert!(out.ssim >= 0.952);
    }

    #[test]
    fn infeasible_candidates_are_never_asked() {
        // A tight limit: most single-pixel changes of a flat image break it.
        let original = RgbImage::filled(16, 16, [128, 128, 128]);
        let oracle = CountingOracle::new(RegionOracle::new(2), &original, None);
        let targets = vec![RegionOracle::new(2).describe_one(&RgbImage::filled(16, 16, [0, 0, 0]))];
        let cfg = PixelAttackConfig {
            ssim_limit: 0.99,
            ssim_margin: 0.0,
            max_rounds: Some(2),
            ..PixelAttackConfig::default()
        };
        let out = measured(&cfg, &original, &original, &targets, &oracle, 10_000).unwrap();
        assert!(out.skipped > 0);
        assert!(oracle.log().min_ssim >= 0.99);
        assert_eq!(oracle.log().total, out.queries);
        assert!(out.queries < 1 + 2 * 600);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let original = noise_image(16, 16, 1);
        let oracle = RegionOracle::new(2);
        let t = vec![oracle.describe_one(&original)];
        let cfg = PixelAttackConfig::default();
        let other = noise_image(16, 16, 2);
        assert!(matches!(
            measured(&cfg, &original, &other, &t, &oracle, 10),
            Err(AttackError::BadInput(_))
        ));
        assert!(measured(&cfg, &original, &original, &[], &oracle, 10).is_err());
        assert!(measured(&cfg, &original, &original, &t, &oracle, 0).is_err());
        let out = resumed(&cfg, &original, &original, 1.0, &t, &oracle, 0).unwrap();
        assert_eq!((out.queries, out.iterations, out.loss), (0, 0, 1.0));
    }
}
