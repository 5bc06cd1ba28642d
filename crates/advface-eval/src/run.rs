//! Scoring a folder of adversarial images as MCS2018 did: reload the PNGs, re-measure SSIM
//! against the original crops, ask the black box afresh. Nothing the attack kept in memory
//! or wrote in its records is trusted for the score; the records give only the attack's
//! query counts and wall time, which the images cannot tell.

use std::path::Path;
use std::time::Instant;

use advface_core::{Descriptor, Oracle, RgbImage, SSIM_LIMIT};
use advface_data::Pair;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{f64_or_nan, score_pair, summarise, Metric, PairScore, Summary};

/// One image below the SSIM limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Violation {
    /// Crops-relative path.
    pub image: String,
    /// Its SSIM.
    pub ssim: f64,
}

/// The attack's own counts, read from its records (`records/pair_NNNN.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackCounts {
    /// Source images with a record.
    pub images: usize,
    /// Mean black-box queries per source image (target descriptors included).
    pub queries_mean: f64,
    /// Largest number of queries of one source image.
    pub queries_max: u64,
    /// Sum of the pairs' wall times, seconds (pairs run in parallel: more than the run's
    /// wall time).
    pub pair_seconds: f64,
}

/// Everything PROTOCOL.md asks a run to report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunScore {
    /// The adversarial images' score.
    pub attacked: Summary,
    /// The same pairs without attack.
    pub clean: Summary,
    /// The lowest score any attack could reach on these pairs: mean over pairs of the mean
    /// distance from the targets' geometric median to the targets (a source descriptor can
    /// be no closer to all five at once).
    #[serde(deserialize_with = "f64_or_nan")]
    pub floor: f64,
    /// Lowest and mean SSIM over the adversarial images.
    #[serde(deserialize_with = "f64_or_nan")]
    pub ssim_min: f64,
    /// See `ssim_min`.
    #[serde(deserialize_with = "f64_or_nan")]
    pub ssim_mean: f64,
    /// Adversarial images scored.
    pub images: usize,
    /// Images below SSIM 0.95 (must be none).
    pub violations: Vec<Violation>,
    /// Pairs that could not be scored, with the reason.
    pub failed: Vec<(usize, String)>,
    /// Per pair: index and the attacked and clean scores.
    pub per_pair: Vec<(usize, f64, f64)>,
    /// The attack's query counts and time, when its records are there.
    pub attack: Option<AttackCounts>,
    /// Queries this scoring asked the black box.
    pub scoring_queries: u64,
    /// Wall time of the scoring, seconds.
    pub wall_s: f64,
    /// The machine, in words.
    pub machine: String,
    /// The black box that scored (its name); empty in reports older than this field.
    #[serde(default)]
    pub black_box: String,
    /// SHA-256 of the run's `config.json` (what the attack ran), when the folder has one:
    /// reports of different runs are never merged.
    #[serde(default)]
    pub run_config_sha256: Option<String>,
}

struct Scored {
    index: usize,
    attacked: PairScore,
    clean: PairScore,
    floor: f64,
    ssims: Vec<(String, f64)>,
}

fn read(path: &Path) -> Result<RgbImage, String> {
    advface_image::read_image(path).map_err(|e| e.to_string())
}

fn score_one(
    index: usize,
    pair: &Pair,
    crops: &Path,
    adv: &Path,
    oracle: &dyn Oracle,
    metric: &Metric,
) -> Result<Scored, String> {
    let originals: Vec<RgbImage> = pair
        .sources
        .iter()
        .map(|p| read(&crops.join(p)))
        .collect::<Result<_, _>>()?;
    let targets: Vec<RgbImage> = pair
        .targets
        .iter()
        .map(|p| read(&crops.join(p)))
        .collect::<Result<_, _>>()?;
    let mut adversarial = Vec::with_capacity(originals.len());
    let mut ssims = Vec::with_capacity(originals.len());
    for (p, orig) in pair.sources.iter().zip(&originals) {
        let path = adv.join(p).with_extension("png");
        let im = read(&path).map_err(|e| {
            format!("{e} (no adversarial image for source {p}: did the attack finish this pair?)")
        })?;
        let s = advface_image::ssim(orig, &im)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .mean;
        ssims.push((p.clone(), s));
        adversarial.push(im);
    }
    let mut all = adversarial;
    all.extend(originals);
    all.extend(targets);
    let d = oracle.describe(&all).map_err(|e| e.to_string())?;
    let n = pair.sources.len();
    let (adv_d, rest) = d.split_at(n);
    let (clean_d, target_d): (&[Descriptor], &[Descriptor]) = rest.split_at(n);
    let attacked = score_pair(index, adv_d, target_d, metric).map_err(|e| e.to_string())?;
    let clean = score_pair(index, clean_d, target_d, metric).map_err(|e| e.to_string())?;
    Ok(Scored {
        index,
        attacked,
        clean,
        floor: floor(target_d),
        ssims,
    })
}

/// Mean L2 distance from the geometric median of `targets` to them (Weiszfeld's iteration):
/// the smallest mean L2 distance to all targets any descriptor can have.
pub fn floor(targets: &[Descriptor]) -> f64 {
    let len = targets[0].len();
    let mean_dist = |c: &[f64]| {
        targets
            .iter()
            .map(|t| {
                t.as_slice()
                    .iter()
                    .zip(c)
                    .map(|(a, b)| (f64::from(*a) - b).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .sum::<f64>()
            / targets.len() as f64
    };
    let mut c = vec![0f64; len];
    for t in targets {
        for (a, b) in c.iter_mut().zip(t.as_slice()) {
            *a += f64::from(*b) / targets.len() as f64;
        }
    }
    for _ in 0..200 {
        let mut num = vec![0f64; len];
        let mut den = 0f64;
        for t in targets {
            let d = t
                .as_slice()
                .iter()
                .zip(&c)
                .map(|(a, b)| (f64::from(*a) - b).powi(2))
                .sum::<f64>()
                .sqrt()
                .max(1e-12);
            for (n, v) in num.iter_mut().zip(t.as_slice()) {
                *n += f64::from(*v) / d;
            }
            den += 1.0 / d;
        }
        c = num.into_iter().map(|v| v / den).collect();
    }
    mean_dist(&c)
}

/// Reads the attack's records in `adv/records` for the selected pairs (pairs without a
/// readable record are left out).
pub fn attack_counts(adv: &Path, selected: &[usize]) -> Option<AttackCounts> {
    let mut queries = Vec::new();
    let mut seconds = 0.0;
    for &i in selected {
        let Some(rec) = crate::record::read_record(adv, i) else {
            continue;
        };
        seconds += rec.wall_s;
        queries.extend(rec.outcomes.iter().map(|o| o.queries));
    }
    if queries.is_empty() {
        return None;
    }
    Some(AttackCounts {
        images: queries.len(),
        queries_mean: queries.iter().sum::<u64>() as f64 / queries.len() as f64,
        queries_max: queries.iter().copied().max().unwrap_or(0),
        pair_seconds: seconds,
    })
}

/// The machine, in words (CPU model and logical cores).
pub fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{model}, {cores} logical cores")
}

/// Scores the adversarial images in `adv` for the `selected` pairs: SSIM against the
/// originals in `crops`, the black box asked afresh for the adversarial sources, the clean
/// sources and the targets, distances and matches under `metric`. Pairs that cannot be
/// scored are reported, the others still are.
pub fn score_run(
    pairs: &[Pair],
    selected: &[usize],
    crops: &Path,
    adv: &Path,
    oracle: &dyn Oracle,
    metric: &Metric,
) -> RunScore {
    let start = Instant::now();
    let before = oracle.stats().queries;
    let results: Vec<(usize, Result<Scored, String>)> = selected
        .par_iter()
        .with_max_len(1)
        .map(|&i| (i, score_one(i, &pairs[i], crops, adv, oracle, metric)))
        .collect();
    let mut attacked = Vec::new();
    let mut clean = Vec::new();
    let mut ssims = Vec::new();
    let mut failed = Vec::new();
    let mut per_pair = Vec::new();
    let mut floors = Vec::new();
    for (i, r) in results {
        match r {
            Ok(s) => {
                floors.push(s.floor);
                per_pair.push((s.index, s.attacked.mean_l2, s.clean.mean_l2));
                attacked.push(s.attacked);
                clean.push(s.clean);
                ssims.extend(s.ssims);
            }
            Err(e) => failed.push((i, e)),
        }
    }
    let violations = ssims
        .iter()
        .filter(|(_, s)| *s < SSIM_LIMIT)
        .map(|(p, s)| Violation {
            image: p.clone(),
            ssim: *s,
        })
        .collect();
    let values: Vec<f64> = ssims.iter().map(|(_, s)| *s).collect();
    RunScore {
        attacked: summarise(&attacked, metric),
        clean: summarise(&clean, metric),
        floor: floors.iter().sum::<f64>() / floors.len() as f64,
        ssim_min: values.iter().copied().fold(f64::NAN, f64::min),
        ssim_mean: values.iter().sum::<f64>() / values.len() as f64,
        images: values.len(),
        violations,
        failed,
        per_pair,
        attack: attack_counts(adv, selected),
        scoring_queries: oracle.stats().queries - before,
        wall_s: start.elapsed().as_secs_f64(),
        machine: machine(),
        black_box: oracle.name(),
        run_config_sha256: std::fs::read(adv.join("config.json"))
            .ok()
            .map(|b| format!("{:x}", Sha256::digest(&b))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_of_a_square_is_the_distance_from_its_centre() {
        let t: Vec<Descriptor> = [[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]]
            .iter()
            .map(|v| Descriptor(v.to_vec()))
            .collect();
        assert!((floor(&t) - 2f64.sqrt()).abs() < 1e-9);
        // Three points together and one far away: the median sits on the cluster.
        let t: Vec<Descriptor> = [[0.0], [0.0], [0.0], [10.0]]
            .iter()
            .map(|v| Descriptor(v.to_vec()))
            .collect();
        assert!((floor(&t) - 2.5).abs() < 1e-6);
    }
}
