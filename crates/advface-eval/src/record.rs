//! The run record: what `advface attack` writes per pair (`records/pair_NNNN.json`), one
//! typed struct for the runner that writes it and the scorer that reads it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What became of one source image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceOutcome {
    /// SSIM of the result against the original (never below the limit).
    pub ssim: f64,
    /// The black box's mean distance to the targets, where the attack asked it (the clean
    /// image's before, the result's after); `None` in pure transfer.
    pub blackbox_before: Option<f64>,
    /// See `blackbox_before`.
    pub blackbox_after: Option<f64>,
    /// The ensemble's mean distance to the mean target at the start and the end; `None`
    /// without a gradient stage.
    pub surrogate_before: Option<f64>,
    /// See `surrogate_before`.
    pub surrogate_after: Option<f64>,
    /// Gradient steps taken.
    pub steps: usize,
    /// Black-box queries charged to this image (its target descriptor included).
    pub queries: u64,
    /// Checks the black box accepted, refused, and steps forced after the patience ran out.
    pub accepted: usize,
    /// See `accepted`.
    pub refused: usize,
    /// See `accepted`.
    pub forced: usize,
}

impl SourceOutcome {
    /// The outcome of an image no gradient step touched, `queries` charged so far.
    pub fn untouched(queries: u64) -> Self {
        Self {
            ssim: 1.0,
            blackbox_before: None,
            blackbox_after: None,
            surrogate_before: None,
            surrogate_after: None,
            steps: 0,
            queries,
            accepted: 0,
            refused: 0,
            forced: 0,
        }
    }
}

/// What the query stage did to one source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefineOutcome {
    /// The black box's mean distance to the targets where the stage started and ended;
    /// `None` when no query was left to measure the start.
    pub start: Option<f64>,
    /// See `start`.
    pub end: Option<f64>,
    /// Queries the stage made.
    pub queries: u64,
    /// The student-guided estimator only: mean share of its gradient estimates that lay
    /// along the students' gradient (how far the black box agreed with the students).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior_share: Option<f64>,
}

/// The record of one pair, `records/pair_NNNN.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairRecord {
    /// Index of the pair in the pairs file (0-based).
    pub index: usize,
    /// Crops-relative source and target paths.
    pub sources: Vec<String>,
    /// See `sources`.
    pub targets: Vec<String>,
    /// One outcome per source, in order (`queries` counts both stages, the target
    /// descriptor included).
    pub outcomes: Vec<SourceOutcome>,
    /// The query stage per source, when there is one.
    #[serde(default)]
    pub refined: Vec<RefineOutcome>,
    /// Wall time of the pair, seconds.
    pub wall_s: f64,
}

/// Path of the record of pair `index`.
pub fn record_path(out: &Path, index: usize) -> PathBuf {
    out.join("records").join(format!("pair_{index:04}.json"))
}

/// Reads a pair's record, if a previous run wrote one.
pub fn read_record(out: &Path, index: usize) -> Option<PairRecord> {
    let bytes = std::fs::read(record_path(out, index)).ok()?;
    serde_json::from_slice(&bytes).ok()
}
