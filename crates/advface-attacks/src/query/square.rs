//! The Square Attack (Andriushchenko, Croce, Flammarion, Hein, ECCV 2020), adapted to the
//! MCS2018 task: the loss is the objective on the black box's answers (the mean L2 distance
//! to the targets), and the Lp ball is replaced by the SSIM limit.
//!
//! Each iteration proposes a random square window of the current image, shifted by a
//! random `+-delta` grey levels per channel (the paper's L-infinity proposal: one sign per
//! channel over the whole window), clamped to `0..=255`. The side shrinks with the
//! iteration as the paper's piecewise-constant schedule of `p`, the share of the pixels
//! changed (`p_init` halved at 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 of 10,000
//! iterations, rescaled to the budget; side `round(sqrt(p * h * w))`, in `1..=min(h, w) - 1`).
//! A proposal below the SSIM limit is retried with `delta` halved, up to 3 times, and
//! otherwise skipped without a query. A proposal is accepted when the black box's distance
//! improves. With `batch > 1`, that many proposals are made from the same image and asked in
//! one call, and the best of them is accepted if it improves.
//!
//! The budget is exact: every image asked is one query, and no call asks for more images
//! than the budget has left.

use advface_core::{RgbImage, SSIM_LIMIT};
use advface_search::Rng;
use serde::{Deserialize, Serialize};

use super::{QueryAttack, QueryContext, QueryOutcome, Scorer};
use crate::AttackError;

/// Settings of the square attack (a [`QueryAttack`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SquareAttackConfig {
    /// Initial share of the pixels in the square (Andriushchenko et al. 2020, L-infinity
    /// attack: 0.05).
    pub p_init: f64,
    /// Colour offset per channel in grey levels (0..255 scale), `+-delta` with a random
    /// sign (in place of the paper's `+-eps`; default 16).
    pub delta: u8,
    /// Times `delta` is halved for a proposal below the SSIM limit before it is skipped
    /// (default 3: `delta`, `delta / 2`, `delta / 4`, `delta / 8`).
    pub halvings: usize,
    /// Proposals asked per oracle call, each one query (the paper: 1).
    pub batch: usize,
    /// Iterations the `p` schedule spans; `None` for the query budget (the paper: its
    /// query budget, 10,000). Iterations count queries asked and proposals skipped.
    pub schedule_horizon: Option<u64>,
    /// Proposals skipped in a row (all below the SSIM limit) that end the attack
    /// (default 1,000).
    pub max_skips_in_row: u64,
    /// The protocol's SSIM limit (0.95).
    pub ssim_limit: f64,
    /// Safety margin above the limit that every image asked or returned keeps (0.002, as
    /// the gradient attacks of advface-attacks).
    pub ssim_margin: f64,
    /// Seed of every random draw.
    pub seed: u64,
}

impl Default for SquareAttackConfig {
    fn default() -> Self {
        Self {
            p_init: 0.05,
            delta: 16,
            halvings: 3,
            batch: 1,
            schedule_horizon: None,
            max_skips_in_row: 1000,
            ssim_limit: SSIM_LIMIT,
            ssim_margin: 0.002,
            seed: 0,
        }
    }
}

/// The paper's schedule of `p` at iteration `it` of `n_iters` (its `p_selection`, with
/// iterations past the horizon kept at the last value).
pub fn p_schedule(p_init: f64, it: u64, n_iters: u64) -> f64 {
    let it = (it as f64 / n_iters.max(1) as f64 * 10_000.0) as u64;
    let halvings = match it {
        0..=10 => 0,
        11..=50 => 1,
        51..=200 => 2,
        201..=500 => 3,
        501..=1000 => 4,
        1001..=2000 => 5,
        2001..=4000 => 6,
        4001..=6000 => 7,
        6001..=8000 => 8,
        _ => 9,
    };
    p_init / f64::from(1u32 << halvings)
}

/// Side of the square for share `p` of a `w x h` image (the paper's
/// `round(sqrt(p * n_features / c))`, in `1..=min(w, h) - 1`).
pub fn square_side(p: f64, w: u32, h: u32) -> u32 {
    let s = (p * f64::from(w) * f64::from(h)).sqrt().round() as u32;
    s.clamp(1, w.min(h).saturating_sub(1).max(1))
}

impl QueryAttack for SquareAttackConfig {
    fn name(&self) -> &'static str {
        "square"
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

    /// Proposals from `start` until the budget is spent (a budget of 0 returns the start
    /// image); `iterations` counts proposals asked and skipped, `improved` those accepted,
    /// `skipped` those never asked (below the SSIM limit even at the smallest `delta`, or
    /// changing nothing).
    fn run(
        &self,
        ctx: &QueryContext<'_>,
        start: &RgbImage,
        start_loss: f64,
        budget: u64,
    ) -> Result<QueryOutcome, AttackError> {
        square_attack_from(ctx, start, start_loss, self, budget)
    }
}

fn square_attack_from(
    ctx: &QueryContext<'_>,
    start: &RgbImage,
    start_distance: f64,
    cfg: &SquareAttackConfig,
    budget: u64,
) -> Result<QueryOutcome, AttackError> {
    if !(cfg.p_init > 0.0 && cfg.p_init <= 1.0) {
        return Err(AttackError::BadInput(format!(
            "invalid search settings: p_init must be in (0, 1], got {}",
            cfg.p_init
        )));
    }
    if cfg.delta == 0 || cfg.batch == 0 {
        return Err(AttackError::BadInput(
            "invalid search settings: delta and batch must be at least 1".into(),
        ));
    }
    let limit = cfg.ssim_limit + cfg.ssim_margin;
    let mut scorer = Scorer::new(ctx, start, limit, budget)?;
    let horizon = cfg.schedule_horizon.unwrap_or(budget).max(1);
    let (w, h) = (start.width(), start.height());
    let mut rng = Rng::new(cfg.seed);
    let mut current = start.clone();
    let mut current_d = start_distance;
    let (mut accepted, mut skipped, mut skips_in_row) = (0u64, 0u64, 0u64);
    'outer: while scorer.remaining() > 0 {
        let want = (cfg.batch as u64).min(scorer.remaining()) as usize;
        let mut proposals = Vec::with_capacity(want);
        while proposals.len() < want {
            if skips_in_row >= cfg.max_skips_in_row {
                if proposals.is_empty() {
                    break 'outer;
                }
                break;
            }
            let it = scorer.used() + proposals.len() as u64 + skipped;
            let side = square_side(p_schedule(cfg.p_init, it, horizon), w, h);
            match propose(&scorer, &current, side, cfg, &mut rng)? {
                Some(im) => {
                    proposals.push(im);
                    skips_in_row = 0;
                }
                None => {
                    skipped += 1;
                    skips_in_row += 1;
                }
            }
        }
        let d = scorer.losses(&proposals)?;
        if let Some((i, &best)) = d.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1)) {
            if best < current_d {
                current_d = best;
                current = proposals.swap_remove(i);
                accepted += 1;
            }
        }
    }
    Ok(QueryOutcome {
        ssim: scorer.ssim(&current)?,
        image: current,
        loss: current_d,
        start_loss: start_distance,
        queries: scorer.used(),
        iterations: scorer.used() + skipped,
        improved: accepted,
        skipped,
        prior_share: None,
    })
}

/// One proposal on `current`: a random `side x side` window shifted by `+-delta` per
/// channel, `delta` halved while the SSIM limit is broken; `None` when it stays broken or
/// nothing changes.
fn propose(
    scorer: &Scorer<'_>,
    current: &RgbImage,
    side: u32,
    cfg: &SquareAttackConfig,
    rng: &mut Rng,
) -> Result<Option<RgbImage>, AttackError> {
    let (w, h) = (current.width() as usize, current.height() as usize);
    let s = side as usize;
    let y0 = rng.index(h - s + 1);
    let x0 = rng.index(w - s + 1);
    let signs: [i32; 3] = std::array::from_fn(|_| if rng.next_u64() >> 63 == 0 { -1 } else { 1 });
    let mut delta = i32::from(cfg.delta);
    for _ in 0..=cfg.halvings {
        let mut cand = current.clone();
        let bytes = cand.as_bytes_mut();
        let mut changed = false;
        for y in y0..y0 + s {
            for x in x0..x0 + s {
                let at = (y * w + x) * 3;
                for c in 0..3 {
                    let v = (i32::from(bytes[at + c]) + signs[c] * delta).clamp(0, 255) as u8;
                    changed |= v != bytes[at + c];
                    bytes[at + c] = v;
                }
            }
        }
        if !changed {
            return Ok(None);
        }
        if scorer.ssim(&cand)? >= scorer.limit() {
            return Ok(Some(cand));
        }
        delta /= 2;
        if delta == 0 {
            break;
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::test_oracles::{
        mean_distance, measured, noise_image, smooth_image, CountingOracle, RegionOracle,
    };

    #[test]
    fn schedule_follows_the_paper() {
        assert_eq!(p_schedule(0.05, 0, 10_000), 0.05);
        assert_eq!(p_schedule(0.05, 10, 10_000), 0.05);
        assert_eq!(p_schedule(0.05, 11, 10_000), 0.025);
        assert_eq!(p_schedule(0.05, 500, 10_000), 0.05 / 8.0);
        assert_eq!(p_schedule(0.05, 9_999, 10_000), 0.05 / 512.0);
        assert_eq!(p_schedule(0.05, 50_000, 10_000), 0.05 / 512.0);
        // rescaled: 1,000 queries, iteration 2 is the paper's 20
        assert_eq!(p_schedule(0.05, 2, 1_000), 0.025);
        assert_eq!(square_side(0.05, 112, 112), 25);
        assert_eq!(square_side(0.05 / 512.0, 112, 112), 1);
        assert_eq!(square_side(1.0, 112, 112), 111);
    }

    #[test]
    fn the_budget_is_never_exceeded_and_every_image_holds_the_limit() {
        let original = smooth_image(32, 32, 4);
        let mut goal = original.clone();
        for v in goal.as_bytes_mut().iter_mut() {
            *v = v.saturating_sub(30);
        }
        for (batch, budget) in [(1usize, 1u64), (1, 2), (1, 57), (4, 57), (16, 10), (3, 300)] {
            let oracle = CountingOracle::new(RegionOracle::new(2), &original, Some(budget));
            let targets = vec![RegionOracle::new(2).describe_one(&goal)];
            let cfg = SquareAttackConfig {
                batch,
                ssim_margin: 0.0,
                seed: budget,
                ..SquareAttackConfig::default()
            };
            let out = measured(&cfg, &original, &original, &targets, &oracle, budget).unwrap();
            let log = oracle.log();
            assert_eq!(log.total, out.queries);
            assert_eq!(log.total, budget, "batch {batch}: the whole budget is used");
            assert!(
                log.calls.iter().all(|&c| c <= batch.max(1)),
                "{:?}",
                log.calls
            );
            assert!(log.min_ssim >= 0.95, "asked SSIM {}", log.min_ssim);
            assert!(out.ssim >= 0.95);
            let d = mean_distance(&RegionOracle::new(2).describe_one(&out.image), &targets);
            assert!((d - out.loss).abs() < 1e-12);
        }
    }

    #[test]
    fn the_loss_decreases_on_an_easy_problem() {
        for batch in [1, 8] {
            let original = noise_image(48, 48, 9);
            let mut goal = original.clone();
            for v in goal.as_bytes_mut().iter_mut() {
                *v = v.saturating_add(12);
            }
            let oracle = RegionOracle::new(3);
            let targets = vec![oracle.describe_one(&goal)];
            let cfg = SquareAttackConfig {
                batch,
                ..SquareAttackConfig::default()
            };
            let out = measured(&cfg, &original, &original, &targets, &oracle, 800).unwrap();
            assert!(out.improved >= 10, "{out:?}");
            // a batch spends `batch` queries per accepted step: less progress per query
            let ratio = if batch == 1 { 0.75 } else { 0.9 };
            assert!(out.loss < ratio * out.start_loss, "batch {batch}: {out:?}");
            assert!(out.ssim >= 0.952);
        }
    }

    #[test]
    fn a_start_at_the_limit_makes_proposals_shrink_or_skip() {
        // flat image and a very tight limit: big squares break it, the attack must skip or
        // halve, never ask below the limit
        let original = RgbImage::filled(24, 24, [100, 100, 100]);
        let oracle = CountingOracle::new(RegionOracle::new(2), &original, None);
        let targets = vec![RegionOracle::new(2).describe_one(&noise_image(24, 24, 1))];
        let cfg = SquareAttackConfig {
            ssim_limit: 0.999,
            ssim_margin: 0.0,
            max_skips_in_row: 50,
            ..SquareAttackConfig::default()
        };
        let out = measured(&cfg, &original, &original, &targets, &oracle, 200).unwrap();
        assert!(out.skipped > 0, "{out:?}");
        assert!(oracle.log().min_ssim >= 0.999);
        assert_eq!(oracle.log().total, out.queries);
    }
}
