//! Adversarial attacks on face descriptors under the LFW-MCS protocol (PROTOCOL.md).
//!
//! One iterative loop ([`attack_pair`]) with interchangeable parts, as foolbox builds its
//! attacks:
//! - a gradient source: an [`Ensemble`] of differentiable models (students; the black box's
//!   own network only in the white-box reference run), weighted, with mirrored inputs and
//!   input diversity;
//! - a [`StepRule`]: FGSM (sign), FGVM (`eps * clamp(g / std(g), -2, 2)`), momentum
//!   (MI-FGSM), Nesterov, Adam;
//! - the objective ([`advface_core::Objective`] under a [`advface_core::Metric`]):
//!   impersonation, the distance to the target descriptors, cycling through the 31 non-empty
//!   combinations of the 5 targets ([`target_combinations`]);
//! - an optional black-box acceptance: a step is kept only when the black box's mean distance
//!   to the targets improves, with patience and step halving;
//! - the SSIM limit ([`SsimGuard`]), enforced on the 8-bit rounding of every candidate: a
//!   step that would break it is first repaired along the SSIM gradient (which moves the
//!   perturbation out of the smooth regions SSIM punishes), then shrunk by bisection.
//!
//! Query attacks ([`query`]: the few-pixel DE, Square, the student-guided estimator) share
//! one interface, [`QueryAttack`], and one outcome, [`QueryOutcome`].
//!
//! A method name stands for a [`Plan`] (the registry in [`plan`]): an optional gradient
//! stage, an optional query stage, and where the gradients come from.
//!
//! [`run`] applies the loop to every pair of a pairs file, resumably, in parallel, writing
//! PNGs atomically and a record per pair.

pub mod combos;
pub mod ensemble;
pub mod guard;
pub mod iterative;
pub mod plan;
pub mod query;
pub mod rng;
pub mod run;
pub mod step;

/// The student-guided estimator, at its old path.
pub use query::nes;

pub use combos::target_combinations;
pub use ensemble::{Diversity, Ensemble, Member};
pub use guard::SsimGuard;
pub use iterative::{attack_pair, Acceptance, AttackConfig, PairOutcome, SourceOutcome};
pub use plan::{plan, Models, Plan, PlanOptions, Preset, PRESETS};
pub use query::nes::{nes_attack_from, NesOutcome};
pub use query::{
    run_measured, NesConfig, PixelAttackConfig, QueryAttack, QueryContext, QueryOutcome, Refine,
    Scorer, SquareAttackConfig,
};
pub use run::{
    read_record, record_path, run_pairs, select_pairs, ModelRecord, PairRecord, RefineOutcome,
    RunConfig, RunEvent, RunPaths, RunReport,
};
pub use step::{StepRule, NORMALISED_UNIT};

/// Errors of an attack.
#[derive(Debug, thiserror::Error)]
pub enum AttackError {
    /// A model of the ensemble failed or cannot take the input.
    #[error(transparent)]
    Model(#[from] advface_core::EmbedError),
    /// The black box failed (budget, transport, ...).
    #[error(transparent)]
    Oracle(#[from] advface_core::OracleError),
    /// SSIM could not be computed (sizes).
    #[error(transparent)]
    Ssim(#[from] advface_image::SsimError),
    /// An image could not be read or written.
    #[error(transparent)]
    Image(#[from] advface_image::ImageError),
    /// The input does not fit the attack (sizes, counts, descriptor lengths).
    #[error("{0}")]
    BadInput(String),
    /// The output folder cannot be used.
    #[error("{0}")]
    Output(String),
}

impl From<advface_search::SearchError> for AttackError {
    fn from(e: advface_search::SearchError) -> Self {
        Self::BadInput(e.to_string())
    }
}
