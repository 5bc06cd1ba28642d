//! Derivative-free search: differential evolution with the semantics of
//! `scipy.optimize.differential_evolution` (strategies, Latin hypercube start, dithering,
//! immediate or deferred updating, tol/atol convergence, an exact evaluation budget),
//! checked against scipy's own statistics (`tools/de_reference.py`, test `de_scipy`). The
//! objective takes a batch of candidates, so that a black box answering batches is asked
//! one generation at a time.
//!
//! The attacks built on it (the MCS2018 few-pixel attack, and the Square attack) live in
//! advface-attacks (`advface_attacks::query`), behind its one query-attack interface.

pub mod de;
pub mod rng;

pub use de::{
    differential_evolution, population_size, DeConfig, DeResult, Init, Mutation, StopReason,
    Strategy, Updating,
};
pub use rng::Rng;

/// Errors of a search.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// A setting or bound is invalid.
    #[error("invalid search settings: {0}")]
    Config(String),
    /// The objective of [`differential_evolution`] returned more values than candidates.
    #[error("the objective returned {got} values for {expected} candidates (at most one each)")]
    ObjectiveLength { expected: usize, got: usize },
}
