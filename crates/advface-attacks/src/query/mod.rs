//! Query attacks: black-box search from a start image, one interface ([`QueryAttack`]) and
//! one outcome ([`QueryOutcome`]).
//!
//! - [`pixel`]: the MCS2018 2nd-place few-pixel differential evolution;
//! - [`square`]: the Square attack with the SSIM limit in place of the Lp ball;
//! - [`nes`]: gradient estimation from queries with the students' gradient as a prior.
//!
//! Every attack minimises the [`Objective`]'s loss on the black box's answers under the
//! [`Metric`], never asks for an image below the SSIM limit (measured on the 8-bit image
//! against the original crop), and stops exactly at its query budget: no call asks for more
//! images than the budget has left.
//!
//! A new query attack is one file here (its config, serialisable, implementing
//! [`QueryAttack`]), a variant of [`Refine`] with its arm in [`Refine::attack`], and a
//! plan line in [`crate::plan::PRESETS`].

pub mod nes;
pub mod pixel;
pub mod scorer;
pub mod square;
#[cfg(test)]
mod test_oracles;

use advface_core::{Metric, Objective, Oracle, RgbImage};
use serde::{Deserialize, Serialize};

use crate::ensemble::Ensemble;
use crate::AttackError;

pub use nes::NesConfig;
pub use pixel::PixelAttackConfig;
pub use scorer::Scorer;
pub use square::SquareAttackConfig;

/// One source image's problem, as every query attack sees it.
#[derive(Clone, Copy)]
pub struct QueryContext<'a> {
    /// The protocol's crop: the SSIM reference.
    pub original: &'a RgbImage,
    /// What the black box should say of the image.
    pub objective: &'a Objective,
    /// How descriptors are compared.
    pub metric: &'a Metric,
    /// The black box (budgeted by the caller or not; the attack counts its own queries).
    pub oracle: &'a dyn Oracle,
    /// The students, for attacks that use their gradient (the estimator's prior).
    pub ensemble: Option<&'a Ensemble>,
}

/// What a query attack returns.
#[derive(Debug, Clone)]
pub struct QueryOutcome {
    /// The best image the black box saw (the start image when nothing improved); its SSIM
    /// against the original is at least the limit plus the margin.
    pub image: RgbImage,
    /// The objective's loss of `image` as the black box answered (impersonation: the mean
    /// distance to the targets).
    pub loss: f64,
    /// The same for the start image.
    pub start_loss: f64,
    /// SSIM of `image` against the original.
    pub ssim: f64,
    /// Black-box queries made (the start image's included when [`run_measured`] asked it);
    /// never more than the budget.
    pub queries: u64,
    /// Rounds of DE (pixel), proposals made (square: asked and skipped), estimates (nes).
    pub iterations: u64,
    /// Iterations that improved the loss (pixel: rounds kept; square: proposals accepted;
    /// nes: estimates whose step or a probe improved).
    pub improved: u64,
    /// Candidates never asked, below the SSIM limit (pixel: penalised candidates; square:
    /// proposals skipped); 0 for nes.
    pub skipped: u64,
    /// The estimator only: mean over iterations of the share of the estimate's squared norm
    /// along the students' gradient (how much the black box agreed with the students);
    /// `None` without a prior.
    pub prior_share: Option<f64>,
}

/// A black-box attack that improves a start image with queries.
pub trait QueryAttack: Send + Sync {
    /// Its name, as the `kind` of a [`Refine`] (`pixel`, `square`, `nes`).
    fn name(&self) -> &'static str;

    /// Whether it needs the students (`ctx.ensemble`).
    fn needs_students(&self) -> bool {
        false
    }

    /// The SSIM every image it asks or returns keeps against the original: the protocol's
    /// limit plus the safety margin.
    fn ssim_floor(&self) -> f64;

    /// The same attack with its random draws from `seed` (the runner gives each source its
    /// own).
    fn with_seed(&self, seed: u64) -> Box<dyn QueryAttack>;

    /// Improves `start`, whose loss `start_loss` is known (no query spent on it), with at
    /// most `budget` queries.
    ///
    /// # Errors
    /// [`AttackError::BadInput`] for inputs that do not fit (sizes, descriptor lengths, a
    /// start below the limit, bad settings), and the oracle's and models' errors.
    fn run(
        &self,
        ctx: &QueryContext<'_>,
        start: &RgbImage,
        start_loss: f64,
        budget: u64,
    ) -> Result<QueryOutcome, AttackError>;
}

/// Runs `attack` from `start` whose loss is not known: asks the black box for it first
/// (one query of `budget`), then runs with the rest.
///
/// # Errors
/// As [`QueryAttack::run`], and [`AttackError::BadInput`] for a budget of 0 (nothing can
/// be measured).
pub fn run_measured(
    attack: &dyn QueryAttack,
    ctx: &QueryContext<'_>,
    start: &RgbImage,
    budget: u64,
) -> Result<QueryOutcome, AttackError> {
    if budget == 0 {
        return Err(AttackError::BadInput(
            "a query budget of 0 cannot even measure the start image".into(),
        ));
    }
    let mut scorer = Scorer::new(ctx, start, attack.ssim_floor(), 1)?;
    let d0 = scorer.losses(std::slice::from_ref(start))?[0];
    let mut out = attack.run(ctx, start, d0, budget - 1)?;
    out.queries += 1;
    Ok(out)
}

/// The query stage of a run, as `config.json` records it (`"kind": "pixel"|"square"|"nes"`
/// and the attack's settings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Refine {
    /// The MCS2018 2nd-place few-pixel differential evolution.
    Pixel(PixelAttackConfig),
    /// The Square attack with the SSIM limit.
    Square(SquareAttackConfig),
    /// Gradient estimation from queries with the students' gradient as a prior.
    Nes(NesConfig),
}

impl Refine {
    /// The attack this stage runs.
    pub fn attack(&self) -> &dyn QueryAttack {
        match self {
            Refine::Pixel(c) => c,
            Refine::Square(c) => c,
            Refine::Nes(c) => c,
        }
    }
}
