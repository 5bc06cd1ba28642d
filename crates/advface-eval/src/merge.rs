//! Merging the reports of separately scored shards (`advface score --shard K/N`) into the
//! report of the whole run, exactly as if the whole folder had been scored at once: the
//! score is a mean over pairs, so it is rebuilt from the per-pair scores; counts are summed
//! and means weighted by what they average over.

use std::collections::BTreeSet;

use thiserror::Error;

use crate::run::{AttackCounts, RunScore};
use crate::Summary;

/// Why shard reports cannot be merged.
#[derive(Debug, Error, PartialEq)]
pub enum MergeError {
    /// Nothing to merge.
    #[error("no report to merge")]
    Empty,
    /// Two reports hold the same pair (the same shard given twice, or overlapping shards).
    #[error(
        "pair {pair} is in report {first} and in report {second}: give each shard once, \
         and shards of different N in --shard K/N only where they share no pair (K/10 with \
         the halves K'/20 and (K'+10)/20 of another, K' != K)"
    )]
    Overlap {
        pair: usize,
        first: usize,
        second: usize,
    },
    /// The reports were scored with different match thresholds.
    #[error("report {index} used match threshold {found}, report 0 used {expected}")]
    Threshold {
        index: usize,
        expected: f64,
        found: f64,
    },
    /// The reports were scored by different black boxes.
    #[error(
        "report {index} was scored by black box '{found}', report {reference} by \
         '{expected}': score every shard against the same black box"
    )]
    BlackBox {
        index: usize,
        reference: usize,
        expected: String,
        found: String,
    },
    /// The reports are of different attack runs (their `config.json` differ).
    #[error(
        "report {index} is of another run than report {reference} (config.json sha256 \
         {found} against {expected}): merge only the shards of one `advface attack` \
         configuration"
    )]
    Run {
        index: usize,
        reference: usize,
        expected: String,
        found: String,
    },
    /// A report's per-pair list does not agree with its summary (edited or truncated).
    #[error(
        "report {index} lists {listed} scored pairs but its summary counts {counted}: \
         not an `advface score --json` report"
    )]
    Inconsistent {
        index: usize,
        listed: usize,
        counted: usize,
    },
}

/// The pairs a report covers: scored or failed.
pub fn covered_pairs(r: &RunScore) -> BTreeSet<usize> {
    r.per_pair
        .iter()
        .map(|p| p.0)
        .chain(r.failed.iter().map(|f| f.0))
        .collect()
}

fn weighted(parts: impl Iterator<Item = (f64, usize)>) -> f64 {
    let (sum, n) = parts
        .filter(|(_, n)| *n > 0)
        .fold((0.0, 0usize), |(s, c), (v, n)| (s + v * n as f64, c + n));
    sum / n as f64
}

fn merge_summary(parts: &[&Summary], per_pair_scores: &[f64]) -> Summary {
    let combinations: usize = parts.iter().map(|s| s.combinations).sum();
    // Each part's matches are a whole number of combinations: recover it exactly.
    let matches: f64 = parts
        .iter()
        .filter(|s| s.combinations > 0)
        .map(|s| (s.match_rate * s.combinations as f64).round())
        .sum();
    Summary {
        score: per_pair_scores.iter().sum::<f64>() / per_pair_scores.len() as f64,
        match_rate: matches / combinations as f64,
        threshold: parts[0].threshold,
        pairs: parts.iter().map(|s| s.pairs).sum(),
        combinations,
    }
}

/// Merges the reports of disjoint shards into one, pairs in index order.
pub fn merge_scores(reports: &[RunScore]) -> Result<RunScore, MergeError> {
    let first = reports.first().ok_or(MergeError::Empty)?;
    let mut owner = std::collections::BTreeMap::new();
    // The first report that names its black box, and the first that has its run's config:
    // every other report that records them must agree.
    let black_box = reports
        .iter()
        .enumerate()
        .find(|(_, r)| !r.black_box.is_empty())
        .map(|(i, r)| (i, r.black_box.as_str()));
    let config = reports
        .iter()
        .enumerate()
        .find_map(|(i, r)| r.run_config_sha256.as_deref().map(|c| (i, c)));
    for (i, r) in reports.iter().enumerate() {
        if r.per_pair.len() != r.attacked.pairs {
            return Err(MergeError::Inconsistent {
                index: i,
                listed: r.per_pair.len(),
                counted: r.attacked.pairs,
            });
        }
        if r.attacked.threshold != first.attacked.threshold {
            return Err(MergeError::Threshold {
                index: i,
                expected: first.attacked.threshold,
                found: r.attacked.threshold,
            });
        }
        if let Some(b) = black_box.filter(|b| !r.black_box.is_empty() && r.black_box != b.1) {
            return Err(MergeError::BlackBox {
                index: i,
                reference: b.0,
                expected: b.1.to_string(),
                found: r.black_box.clone(),
            });
        }
        if let (Some(c), Some(found)) = (config, &r.run_config_sha256) {
            if *found != c.1 {
                return Err(MergeError::Run {
                    index: i,
                    reference: c.0,
                    expected: c.1.to_string(),
                    found: found.clone(),
                });
            }
        }
        for p in covered_pairs(r) {
            if let Some(&f) = owner.get(&p) {
                return Err(MergeError::Overlap {
                    pair: p,
                    first: f,
                    second: i,
                });
            }
            owner.insert(p, i);
        }
    }
    let mut per_pair: Vec<(usize, f64, f64)> =
        reports.iter().flat_map(|r| r.per_pair.clone()).collect();
    per_pair.sort_by_key(|p| p.0);
    let mut failed: Vec<(usize, String)> = reports.iter().flat_map(|r| r.failed.clone()).collect();
    failed.sort_by_key(|f| f.0);
    let attacked: Vec<f64> = per_pair.iter().map(|p| p.1).collect();
    let clean: Vec<f64> = per_pair.iter().map(|p| p.2).collect();
    let attack_parts: Vec<&AttackCounts> =
        reports.iter().filter_map(|r| r.attack.as_ref()).collect();
    let attack = (!attack_parts.is_empty()).then(|| AttackCounts {
        images: attack_parts.iter().map(|a| a.images).sum(),
        queries_mean: weighted(attack_parts.iter().map(|a| (a.queries_mean, a.images))),
        queries_max: attack_parts
            .iter()
            .map(|a| a.queries_max)
            .max()
            .unwrap_or(0),
        pair_seconds: attack_parts.iter().map(|a| a.pair_seconds).sum(),
    });
    let mut machines: Vec<&str> = Vec::new();
    for r in reports {
        if !machines.contains(&r.machine.as_str()) {
            machines.push(&r.machine);
        }
    }
    Ok(RunScore {
        attacked: merge_summary(
            &reports.iter().map(|r| &r.attacked).collect::<Vec<_>>(),
            &attacked,
        ),
        clean: merge_summary(
            &reports.iter().map(|r| &r.clean).collect::<Vec<_>>(),
            &clean,
        ),
        floor: weighted(reports.iter().map(|r| (r.floor, r.attacked.pairs))),
        ssim_min: reports
            .iter()
            .filter(|r| r.images > 0)
            .map(|r| r.ssim_min)
            .fold(f64::NAN, f64::min),
        ssim_mean: weighted(reports.iter().map(|r| (r.ssim_mean, r.images))),
        images: reports.iter().map(|r| r.images).sum(),
        violations: reports.iter().flat_map(|r| r.violations.clone()).collect(),
        failed,
        per_pair,
        attack,
        scoring_queries: reports.iter().map(|r| r.scoring_queries).sum(),
        wall_s: reports.iter().map(|r| r.wall_s).sum(),
        machine: machines.join("; "),
        black_box: black_box.map(|b| b.1.to_string()).unwrap_or_default(),
        run_config_sha256: config.map(|c| c.1.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Violation;

    fn summary(scores: &[f64], matches: usize) -> Summary {
        Summary {
            score: scores.iter().sum::<f64>() / scores.len() as f64,
            match_rate: matches as f64 / (25 * scores.len()) as f64,
            threshold: 0.6,
            pairs: scores.len(),
            combinations: 25 * scores.len(),
        }
    }

    /// A report of the pairs `idx` with attacked scores `a`, clean `c`.
    fn report(idx: &[usize], a: &[f64], c: &[f64], matches: usize, q: f64) -> RunScore {
        RunScore {
            attacked: summary(a, matches),
            clean: summary(c, 0),
            floor: 0.3 + idx[0] as f64 * 0.01,
            ssim_min: 0.95 + idx[0] as f64 * 0.001,
            ssim_mean: 0.96,
            images: 5 * idx.len(),
            violations: Vec::new(),
            failed: Vec::new(),
            per_pair: idx
                .iter()
                .zip(a.iter().zip(c))
                .map(|(&i, (&a, &c))| (i, a, c))
                .collect(),
            attack: Some(AttackCounts {
                images: 5 * idx.len(),
                queries_mean: q,
                queries_max: q as u64,
                pair_seconds: 10.0 * idx.len() as f64,
            }),
            scoring_queries: 15 * idx.len() as u64,
            wall_s: 1.0,
            machine: "m".into(),
            black_box: "faceapi".into(),
            run_config_sha256: Some("abc".into()),
        }
    }

    #[test]
    fn merging_shards_gives_the_whole_runs_numbers() {
        // Shard 0/2 holds pairs 0 and 2, shard 1/2 pair 1: unequal sizes, so a plain mean
        // of the shards' scores (0.5 and 0.9) would be wrong.
        let s0 = report(&[0, 2], &[0.4, 0.6], &[0.8, 0.8], 10, 100.0);
        let s1 = report(&[1], &[0.9], &[0.7], 5, 40.0);
        let m = merge_scores(&[s1, s0]).unwrap();
        assert!((m.attacked.score - (0.4 + 0.9 + 0.6) / 3.0).abs() < 1e-12);
        assert!((m.clean.score - 2.3 / 3.0).abs() < 1e-12);
        assert_eq!(m.attacked.pairs, 3);
        assert_eq!(m.attacked.combinations, 75);
        assert!((m.attacked.match_rate - 15.0 / 75.0).abs() < 1e-12);
        assert_eq!(
            m.per_pair.iter().map(|p| p.0).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert!((m.floor - (0.30 * 2.0 + 0.31) / 3.0).abs() < 1e-12);
        assert_eq!(m.ssim_min, 0.95);
        assert_eq!(m.images, 15);
        let a = m.attack.unwrap();
        assert_eq!(a.images, 15);
        assert!((a.queries_mean - (100.0 * 10.0 + 40.0 * 5.0) / 15.0).abs() < 1e-9);
        assert_eq!(a.queries_max, 100);
        assert_eq!(a.pair_seconds, 30.0);
        assert_eq!(m.scoring_queries, 45);
        assert_eq!(m.machine, "m");
    }

    #[test]
    fn violations_and_failures_survive_the_merge() {
        let mut s0 = report(&[0], &[0.5], &[0.8], 0, 10.0);
        s0.violations.push(Violation {
            image: "a.png".into(),
            ssim: 0.94,
        });
        let mut s1 = report(&[1], &[0.5], &[0.8], 0, 10.0);
        s1.failed.push((3, "no image".into()));
        let m = merge_scores(&[s0, s1]).unwrap();
        assert_eq!(m.violations.len(), 1);
        assert_eq!(m.failed, vec![(3, "no image".to_string())]);
        assert_eq!(covered_pairs(&m), [0, 1, 3].into_iter().collect());
    }

    #[test]
    fn overlapping_or_edited_reports_are_refused() {
        let s0 = report(&[0, 2], &[0.4, 0.6], &[0.8, 0.8], 0, 1.0);
        let s1 = report(&[2], &[0.4], &[0.8], 0, 1.0);
        assert_eq!(
            merge_scores(&[s0.clone(), s1]).unwrap_err(),
            MergeError::Overlap {
                pair: 2,
                first: 0,
                second: 1
            }
        );
        let mut cut = s0.clone();
        cut.per_pair.pop();
        assert!(matches!(
            merge_scores(&[cut]),
            Err(MergeError::Inconsistent { index: 0, .. })
        ));
        let mut other = report(&[1], &[0.4], &[0.8], 0, 1.0);
        other.attacked.threshold = 0.5;
        assert!(matches!(
            merge_scores(&[s0.clone(), other]),
            Err(MergeError::Threshold { index: 1, .. })
        ));
        let mut judge = report(&[1], &[0.4], &[0.8], 0, 1.0);
        judge.black_box = "student".into();
        assert!(matches!(
            merge_scores(&[s0.clone(), judge]),
            Err(MergeError::BlackBox { index: 1, .. })
        ));
        let mut run = report(&[1], &[0.4], &[0.8], 0, 1.0);
        run.run_config_sha256 = Some("def".into());
        assert!(matches!(
            merge_scores(&[s0.clone(), run]),
            Err(MergeError::Run { index: 1, .. })
        ));
        // A report older than these fields (none recorded) merges with any.
        let mut old = report(&[1], &[0.4], &[0.8], 0, 1.0);
        old.black_box = String::new();
        old.run_config_sha256 = None;
        assert!(merge_scores(&[s0, old]).is_ok());
        assert_eq!(merge_scores(&[]).unwrap_err(), MergeError::Empty);
    }

    #[test]
    fn a_report_round_trips_through_json_with_nan_fields() {
        let mut r = report(&[0], &[0.5], &[0.8], 0, 1.0);
        r.ssim_min = f64::NAN;
        let json = serde_json::to_vec(&r).unwrap();
        let back: RunScore = serde_json::from_slice(&json).unwrap();
        assert!(back.ssim_min.is_nan());
        assert_eq!(back.per_pair, r.per_pair);
    }
}
