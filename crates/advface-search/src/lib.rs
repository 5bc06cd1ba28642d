//! Derivative-free black-box search for the LFW-MCS protocol (PROTOCOL.md).
//!
//! - [`differential_evolution`]: differential evolution with the semantics of
//!   `scipy.optimize.differential_evolution` (strategies, Latin hypercube start, dithering,
//!   immediate or deferred updating, tol/atol convergence, an exact evaluation budget),
//!   checked against scipy's own statistics (`tools/de_reference.py`, test `de_scipy`).
//!   The objective takes a batch of candidates, so that a black box answering batches is
//!   asked one generation at a time.
//! - [`pixel_attack`]: the MCS2018 2nd-place few-pixel attack on any [`Oracle`]: rounds
//!   of DE over `(row, col, R, G, B)` of `k` pixels, each round starting from the best image
//!   so far.
//! - [`square_attack`]: the Square Attack (Andriushchenko et al. 2020) with the SSIM limit
//!   in place of the Lp ball.
//!
//! Both attacks minimise the black box's mean L2 distance to the target descriptors, never
//! ask it for an image below the SSIM limit (measured on the 8-bit image against the
//! original crop), and stop exactly at a query budget: no call asks for more images than
//! the budget has left.
//!
//! [`Oracle`]: advface_core::Oracle

pub mod blackbox;
pub mod de;
pub mod pixel;
pub mod rng;
pub mod square;
#[cfg(test)]
mod test_oracles;

pub use blackbox::{mean_distance, Scorer};
pub use de::{
    differential_evolution, population_size, DeConfig, DeResult, Init, Mutation, StopReason,
    Strategy, Updating,
};
pub use pixel::{pixel_attack, pixel_attack_from, PixelAttackConfig, PixelOutcome};
pub use rng::Rng;
pub use square::{square_attack, square_attack_from, SquareAttackConfig, SquareOutcome};

/// Errors of a search.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// A setting or bound is invalid.
    #[error("invalid search settings: {0}")]
    Config(String),
    /// The objective of [`differential_evolution`] returned more values than candidates.
    #[error("the objective returned {got} values for {expected} candidates (at most one each)")]
    ObjectiveLength { expected: usize, got: usize },
    /// The inputs of an attack do not fit together (sizes, counts, descriptor lengths).
    #[error("{0}")]
    BadInput(String),
    /// The black box failed (budget, transport, model).
    #[error(transparent)]
    Oracle(#[from] advface_core::OracleError),
    /// SSIM could not be computed (sizes).
    #[error(transparent)]
    Ssim(#[from] advface_image::SsimError),
}
