//! The MCS2018 score (PROTOCOL.md): for each pair, the mean distance between the black
//! box's descriptors of every (adversarial source, target) combination; the run's score is
//! the mean over pairs. Lower is better. The match rate is the share of all combinations
//! the black box takes for the same person. Distances and the same-person test come from a
//! [`Metric`]: face-api.js's is L2 below 0.6 ([`Metric::FACE_API`]).

pub mod curves;
pub mod merge;
pub mod plot;
pub mod record;
pub mod run;

use advface_core::Descriptor;
pub use advface_core::Metric;

pub use merge::{merge_scores, MergeError};
pub use record::{read_record, record_path, PairRecord, RefineOutcome, SourceOutcome};
pub use run::{attack_counts, floor, machine, score_run, AttackCounts, RunScore, Violation};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Errors of scoring.
#[derive(Debug, Error, PartialEq)]
pub enum ScoreError {
    #[error("pair {pair}: no {side} descriptors")]
    Empty { pair: usize, side: &'static str },
    #[error("pair {pair}: descriptor lengths differ ({a} vs {b})")]
    Length { pair: usize, a: usize, b: usize },
}

/// Score of one pair.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairScore {
    /// Mean distance over all (source, target) combinations (L2 for face-api.js).
    pub mean_l2: f64,
    /// Combinations the metric calls the same person (L2 below the threshold).
    pub matches: usize,
    /// Number of combinations (25 in the protocol).
    pub combinations: usize,
    /// `distances[s][t]`: the distance between source `s` and target `t`.
    pub distances: Vec<Vec<f64>>,
}

/// Scores one pair: `sources` are the descriptors of the (adversarial) source images,
/// `targets` those of the target images, compared under `metric`.
pub fn score_pair(
    index: usize,
    sources: &[Descriptor],
    targets: &[Descriptor],
    metric: &Metric,
) -> Result<PairScore, ScoreError> {
    if sources.is_empty() {
        return Err(ScoreError::Empty {
            pair: index,
            side: "source",
        });
    }
    if targets.is_empty() {
        return Err(ScoreError::Empty {
            pair: index,
            side: "target",
        });
    }
    let len = sources[0].len();
    for d in sources.iter().chain(targets) {
        if d.len() != len {
            return Err(ScoreError::Length {
                pair: index,
                a: len,
                b: d.len(),
            });
        }
    }
    let distances: Vec<Vec<f64>> = sources
        .iter()
        .map(|s| targets.iter().map(|t| metric.distance(s, t)).collect())
        .collect();
    let all: Vec<f64> = distances.iter().flatten().copied().collect();
    Ok(PairScore {
        mean_l2: all.iter().sum::<f64>() / all.len() as f64,
        matches: all.iter().filter(|&&d| metric.is_match(d)).count(),
        combinations: all.len(),
        distances,
    })
}

/// Score of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Mean over pairs of each pair's mean distance (L2): the MCS2018 score.
    #[serde(deserialize_with = "f64_or_nan")]
    pub score: f64,
    /// Share of all combinations the metric calls the same person (L2 below `threshold`).
    #[serde(deserialize_with = "f64_or_nan")]
    pub match_rate: f64,
    /// The same-person threshold used.
    pub threshold: f64,
    /// Number of pairs scored.
    pub pairs: usize,
    /// Number of combinations.
    pub combinations: usize,
}

/// Summarises pair scores measured under `metric`. An empty list gives NaN score and match
/// rate.
pub fn summarise(pairs: &[PairScore], metric: &Metric) -> Summary {
    let combinations: usize = pairs.iter().map(|p| p.combinations).sum();
    let matches: usize = pairs.iter().map(|p| p.matches).sum();
    Summary {
        score: pairs.iter().map(|p| p.mean_l2).sum::<f64>() / pairs.len() as f64,
        match_rate: matches as f64 / combinations as f64,
        threshold: metric.threshold(),
        pairs: pairs.len(),
        combinations,
    }
}

/// Reads an f64 that JSON may hold as `null`: serde_json writes NaN (the score of no pair,
/// the SSIM of no image) that way.
pub(crate) fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// The same-person threshold of PROTOCOL.md, 0.6, as f64 (not the f32 constant widened,
/// which is 0.6000000238): [`Metric::FACE_API`]'s.
pub fn default_threshold() -> f64 {
    Metric::FACE_API.threshold()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(v: &[f32]) -> Descriptor {
        Descriptor(v.to_vec())
    }

    #[test]
    fn score_is_mean_over_combinations_then_pairs() {
        // Pair 0: sources at 0 and 1 on a line, targets at 0 and 3.
        // distances: |0-0|=0, |0-3|=3, |1-0|=1, |1-3|=2 -> mean 1.5, matches (<0.6): 1
        let p0 = score_pair(
            0,
            &[d(&[0.0]), d(&[1.0])],
            &[d(&[0.0]), d(&[3.0])],
            &Metric::FACE_API,
        )
        .unwrap();
        assert_eq!(p0.mean_l2, 1.5);
        assert_eq!(p0.matches, 1);
        assert_eq!(p0.combinations, 4);
        // Pair 1: one source, one target, distance 0.5 -> match.
        let p1 = score_pair(1, &[d(&[0.0, 0.3])], &[d(&[0.4, 0.0])], &Metric::FACE_API).unwrap();
        assert!((p1.mean_l2 - 0.5).abs() < 1e-7);
        let s = summarise(&[p0, p1], &Metric::FACE_API);
        assert!((s.score - 1.0).abs() < 1e-7);
        assert!((s.match_rate - 2.0 / 5.0).abs() < 1e-12);
    }

    #[test]
    fn default_threshold_is_the_f64_0_6_that_narrows_to_the_constant() {
        assert_eq!(default_threshold(), 0.6);
        assert_eq!(default_threshold() as f32, advface_core::MATCH_THRESHOLD);
    }

    #[test]
    fn a_cosine_metric_scores_and_matches_by_similarity() {
        let m = Metric::Cosine { threshold: 0.5 };
        // cos 1 (match), cos 0 (no match)
        let p = score_pair(0, &[d(&[1.0, 0.0])], &[d(&[2.0, 0.0]), d(&[0.0, 1.0])], &m).unwrap();
        assert_eq!(p.matches, 1);
        assert!((p.mean_l2 - 0.5).abs() < 1e-12);
        assert_eq!(summarise(&[p], &m).threshold, 0.5);
    }

    #[test]
    fn mismatched_lengths_and_empty_sides_are_errors() {
        assert!(matches!(
            score_pair(3, &[d(&[0.0])], &[d(&[0.0, 1.0])], &Metric::FACE_API),
            Err(ScoreError::Length { pair: 3, .. })
        ));
        assert!(score_pair(0, &[], &[d(&[0.0])], &Metric::FACE_API).is_err());
    }
}
