//! Attacking every pair of a pairs file: resumable, in parallel, outputs written atomically,
//! a record per pair and the resolved config beside the images.
//!
//! Output folder:
//! - `<crops-relative path>.png` for every source image (the names of the pairs file);
//! - `records/pair_NNNN.json`: the pair's outcome (SSIM, queries, distances), written after
//!   its images, so a pair with a record is done and a rerun skips it;
//! - `config.json`: the resolved configuration (method, step rule, seeds, students and their
//!   SHA-256); a rerun with another configuration into the same folder is refused.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use advface_core::{Descriptor, Metric, Objective, Oracle, RgbImage, Shard, SSIM_LIMIT};
use advface_data::Pair;
use advface_oracle::Budgeted;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ensemble::Ensemble;
pub use advface_eval::record::{read_record, record_path, PairRecord, RefineOutcome};

use crate::iterative::{attack_pair, AttackConfig, SourceOracle, SourceOutcome};
use crate::query::QueryContext;
pub use crate::query::Refine;
use crate::AttackError;

/// Images per side of a pair (PROTOCOL.md), advface-data's constant.
pub use advface_data::IMAGES_PER_SIDE;

/// A model of the ensemble, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// Name (`student:runs/s1/student.weights`, `faceapi`).
    pub name: String,
    /// SHA-256 of its weight file(s).
    pub sha256: String,
    /// Weight in the ensemble (normalised).
    pub weight: f32,
}

/// The resolved configuration of a run, written to `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// Method name as given (`fgvm`, `nesterov`, `whitebox-fgvm`, ...).
    pub method: String,
    /// `true` when gradients come from the black box's own network (the white-box
    /// reference, PROTOCOL.md): never a black-box result.
    pub white_box: bool,
    /// The gradient loop's configuration (`steps: 0` for none).
    pub attack: AttackConfig,
    /// The query stage after it, if any.
    pub refine: Option<Refine>,
    /// Queries allowed per source image, its share of the target descriptors included;
    /// `None`: no limit.
    pub budget_per_image: Option<u64>,
    /// The ensemble.
    pub models: Vec<ModelRecord>,
    /// Mirrored inputs.
    pub mirror: bool,
    /// Input diversity.
    pub diversity: Option<crate::Diversity>,
    /// The black box's name.
    pub oracle: String,
    /// How descriptors are compared: face-api.js's L2 below 0.6 unless said otherwise
    /// (absent from `config.json` then, as in runs from before it was a setting).
    #[serde(default, skip_serializing_if = "Metric::is_face_api")]
    pub metric: Metric,
    /// The pairs file and crops folder.
    pub pairs_file: PathBuf,
    /// See `pairs_file`.
    pub crops: PathBuf,
}

/// Progress of a run.
#[derive(Debug, Clone)]
pub enum RunEvent {
    /// The run starts with `todo` pairs to attack and `done` already recorded.
    Start { todo: usize, done: usize },
    /// A pair finished.
    PairDone(Box<PairRecord>),
    /// A pair failed; the others go on.
    PairFailed { index: usize, error: String },
}

/// Totals of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    /// Pairs selected (after `--n` and `--shard`).
    pub selected: usize,
    /// Pairs attacked in this run.
    pub attacked: usize,
    /// Pairs skipped because a previous run recorded them.
    pub resumed: usize,
    /// Pairs that failed, with the reason.
    pub failed: Vec<(usize, String)>,
    /// Black-box queries made by this run.
    pub queries: u64,
    /// Wall time, seconds.
    pub wall_s: f64,
}

/// Where the pairs come from, where the images go, and which pairs of the file to run.
#[derive(Debug, Clone)]
pub struct RunPaths {
    /// The pairs file (for the record).
    pub pairs_file: PathBuf,
    /// The folder the pairs' paths are relative to.
    pub crops: PathBuf,
    /// The output folder.
    pub out: PathBuf,
}

/// Which pairs of a list a run attacks: the first `n` (all when `None`), then those of
/// `shard` ([`Shard::select`]).
pub fn select_pairs(count: usize, n: Option<usize>, shard: Shard) -> Vec<usize> {
    shard.select(count, n)
}

fn io_err(what: &str, path: &Path, e: impl std::fmt::Display) -> AttackError {
    AttackError::Output(format!("{what} {}: {e}", path.display()))
}

/// Refuses an output folder that is, or is inside, the crops folder (originals are never
/// overwritten), and a folder holding a run with another configuration.
fn prepare_out(paths: &RunPaths, config: &RunConfig) -> Result<(), AttackError> {
    std::fs::create_dir_all(paths.out.join("records"))
        .map_err(|e| io_err("cannot create the output folder", &paths.out, e))?;
    let out = paths
        .out
        .canonicalize()
        .map_err(|e| io_err("cannot resolve", &paths.out, e))?;
    let crops = paths
        .crops
        .canonicalize()
        .map_err(|e| io_err("cannot open the crops folder", &paths.crops, e))?;
    if out.starts_with(&crops) {
        return Err(AttackError::Output(format!(
            "the output folder {} is inside the crops folder {}: adversarial images would \
             overwrite or mix with the originals; choose another --out",
            paths.out.display(),
            paths.crops.display()
        )));
    }
    let file = paths.out.join("config.json");
    let json = serde_json::to_vec_pretty(config).map_err(|e| io_err("encoding", &file, e))?;
    if let Ok(old) = std::fs::read(&file) {
        let old: Result<RunConfig, _> = serde_json::from_slice(&old);
        match old {
            Ok(old) if old == *config => return Ok(()),
            Ok(_) | Err(_) => {
                return Err(AttackError::Output(format!(
                    "{} holds a run with another configuration ({}): resume it with the \
                     same flags, or choose a new --out",
                    paths.out.display(),
                    file.display()
                )))
            }
        }
    }
    advface_image::write_atomic(&file, &json)?;
    Ok(())
}

/// Attacks the selected pairs with `threads` pairs in parallel, skipping pairs a previous
/// run recorded. `oracle` is the black box (target descriptors always come from it);
/// `config.budget_per_image` limits each source image's queries, its share of the target
/// descriptors included.
#[allow(clippy::too_many_arguments)]
pub fn run_pairs(
    pairs: &[Pair],
    selected: &[usize],
    paths: &RunPaths,
    ensemble: Option<&Ensemble>,
    oracle: Arc<dyn Oracle>,
    config: &RunConfig,
    threads: usize,
    observer: &(dyn Fn(RunEvent) + Sync),
) -> Result<RunReport, AttackError> {
    let start = Instant::now();
    if config.attack.steps > 0 && ensemble.is_none() {
        return Err(AttackError::BadInput(
            "a gradient stage needs an ensemble of students".into(),
        ));
    }
    if let Some(r) = &config.refine {
        if r.attack().needs_students() && ensemble.is_none() {
            return Err(AttackError::BadInput(format!(
                "the query stage '{}' needs an ensemble of students (the estimator's prior)",
                r.attack().name()
            )));
        }
    }
    if let (Some(len), Some(ensemble)) = (oracle.descriptor_len(), ensemble) {
        if len != ensemble.descriptor_len() {
            return Err(AttackError::BadInput(format!(
                "descriptor length mismatch: the black box '{}' gives {len} components, the \
                 models ({}) give {}; use students distilled from this black box",
                oracle.name(),
                ensemble.names().join(", "),
                ensemble.descriptor_len()
            )));
        }
    }
    if config.budget_per_image == Some(0) {
        return Err(AttackError::BadInput(
            "--budget 0 leaves no query for the target descriptors (each source image is \
             charged its share of them); use at least 1"
                .into(),
        ));
    }
    prepare_out(paths, config)?;
    let queries_before = oracle.stats().queries;
    let mut report = RunReport {
        selected: selected.len(),
        ..Default::default()
    };
    let todo: Vec<usize> = selected
        .iter()
        .copied()
        .filter(|&i| read_record(&paths.out, i).is_none())
        .collect();
    report.resumed = selected.len() - todo.len();
    observer(RunEvent::Start {
        todo: todo.len(),
        done: report.resumed,
    });
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| AttackError::BadInput(format!("thread pool: {e}")))?;
    let results: Vec<(usize, Result<(), AttackError>)> = pool.install(|| {
        todo.par_iter()
            .with_max_len(1)
            .map(|&i| {
                let r = run_one(i, &pairs[i], paths, ensemble, &oracle, config);
                match &r {
                    Ok(rec) => observer(RunEvent::PairDone(Box::new(rec.clone()))),
                    Err(e) => observer(RunEvent::PairFailed {
                        index: i,
                        error: e.to_string(),
                    }),
                }
                (i, r.map(|_| ()))
            })
            .collect()
    });
    for (i, r) in results {
        match r {
            Ok(()) => report.attacked += 1,
            Err(e) => report.failed.push((i, e.to_string())),
        }
    }
    report.queries = oracle.stats().queries - queries_before;
    report.wall_s = start.elapsed().as_secs_f64();
    Ok(report)
}

fn read_side(crops: &Path, paths: &[String], side: &str) -> Result<Vec<RgbImage>, AttackError> {
    if paths.len() != IMAGES_PER_SIDE {
        return Err(AttackError::BadInput(format!(
            "the pair has {} {side} image(s), the protocol needs {IMAGES_PER_SIDE}: {}",
            paths.len(),
            paths.join("|")
        )));
    }
    paths
        .iter()
        .map(|p| {
            let im = advface_image::read_image(&crops.join(p))?;
            if (im.width(), im.height()) != (advface_core::CROP_SIZE, advface_core::CROP_SIZE) {
                return Err(AttackError::BadInput(format!(
                    "{}: {}x{} pixels, the protocol's crops are 112x112 (made by `advface \
                     prepare`)",
                    crops.join(p).display(),
                    im.width(),
                    im.height()
                )));
            }
            Ok(im)
        })
        .collect()
}

fn run_one(
    index: usize,
    pair: &Pair,
    paths: &RunPaths,
    ensemble: Option<&Ensemble>,
    oracle: &Arc<dyn Oracle>,
    config: &RunConfig,
) -> Result<PairRecord, AttackError> {
    let start = Instant::now();
    let sources = read_side(&paths.crops, &pair.sources, "source")?;
    let targets_im = read_side(&paths.crops, &pair.targets, "target")?;
    let budget = config.budget_per_image.unwrap_or(u64::MAX);
    let oracles: Vec<SourceOracle> = sources
        .iter()
        .map(|_| Budgeted::new(Arc::clone(oracle), budget))
        .collect();
    // Each source pays for the target with its own index (5 targets over 5 sources).
    let mut targets: Vec<Descriptor> = Vec::with_capacity(targets_im.len());
    for (j, t) in targets_im.iter().enumerate() {
        let d = oracles[j % oracles.len()].describe(std::slice::from_ref(t))?;
        targets.extend(d);
    }
    let objective = Objective::impersonate(targets);
    let mut outcome = match ensemble {
        Some(e) if config.attack.steps > 0 => attack_pair(
            &sources,
            &objective,
            &config.metric,
            e,
            Some(&oracles),
            &config.attack,
            index as u64,
        )?,
        _ => crate::iterative::PairOutcome {
            images: sources.clone(),
            sources: oracles
                .iter()
                .map(|o| SourceOutcome::untouched(o.used()))
                .collect(),
        },
    };
    let mut refined = Vec::new();
    if let Some(refine) = &config.refine {
        for (i, o) in oracles.iter().enumerate() {
            let ctx = QueryContext {
                original: &sources[i],
                objective: &objective,
                metric: &config.metric,
                oracle: o,
                ensemble,
            };
            let r = refine_one(
                refine,
                &ctx,
                o,
                &outcome.images[i],
                outcome.sources[i].blackbox_after,
                outcome.sources[i].blackbox_before,
                index as u64 * 8 + i as u64,
            )?;
            outcome.sources[i].queries = o.used();
            if r.1.end.is_some() {
                outcome.sources[i].blackbox_after = r.1.end;
            }
            if outcome.sources[i].blackbox_before.is_none() && outcome.images[i] == sources[i] {
                outcome.sources[i].blackbox_before = r.1.start;
            }
            outcome.sources[i].ssim = advface_image::ssim(&sources[i], &r.0)?.mean;
            outcome.images[i] = r.0;
            refined.push(r.1);
        }
    }
    // Never write below the limit: measure once more, against the original as read.
    for ((im, orig), rel) in outcome.images.iter().zip(&sources).zip(&pair.sources) {
        let s = advface_image::ssim(orig, im)?.mean;
        if s < SSIM_LIMIT {
            return Err(AttackError::Output(format!(
                "{rel}: SSIM {s:.5} below {SSIM_LIMIT}; not written (a bug: please report)"
            )));
        }
    }
    for (im, rel) in outcome.images.iter().zip(&pair.sources) {
        let path = paths.out.join(rel).with_extension("png");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io_err("cannot create", dir, e))?;
        }
        advface_image::write_png_atomic(&path, im)?;
    }
    let record = PairRecord {
        index,
        sources: pair.sources.clone(),
        targets: pair.targets.clone(),
        outcomes: outcome.sources,
        refined,
        wall_s: start.elapsed().as_secs_f64(),
    };
    let file = record_path(&paths.out, index);
    let json = serde_json::to_vec_pretty(&record).map_err(|e| io_err("encoding", &file, e))?;
    advface_image::write_atomic(&file, &json)?;
    Ok(record)
}

/// Runs the query stage on one source with what is left of its budget. Starts from the
/// better (for the black box) of the gradient stage's image and the original; what the
/// start costs to measure is paid from the same budget. `oracle` is the source's budgeted
/// black box, the one `ctx` asks.
fn refine_one(
    refine: &Refine,
    ctx: &QueryContext<'_>,
    oracle: &SourceOracle,
    start: &RgbImage,
    start_distance: Option<f64>,
    original_distance: Option<f64>,
    seed: u64,
) -> Result<(RgbImage, RefineOutcome), AttackError> {
    let original = ctx.original;
    let used_before = oracle.used();
    let mut best = (original.clone(), f64::INFINITY);
    let mut candidates: Vec<(RgbImage, Option<f64>)> = vec![(start.clone(), start_distance)];
    if start != original {
        candidates.push((original.clone(), original_distance));
    }
    for (im, known) in candidates {
        let d = match known {
            Some(d) => d,
            None if oracle.remaining() > 0 => {
                let d = oracle.describe(std::slice::from_ref(&im))?;
                ctx.objective.loss(&d[0], ctx.metric)
            }
            None => continue,
        };
        if d < best.1 {
            best = (im, d);
        }
    }
    if !best.1.is_finite() {
        // No query left even to measure the start: keep the gradient stage's image.
        return Ok((
            start.clone(),
            RefineOutcome {
                start: None,
                end: None,
                queries: 0,
                prior_share: None,
            },
        ));
    }
    let budget = oracle.remaining();
    let o = refine
        .attack()
        .with_seed(seed)
        .run(ctx, &best.0, best.1, budget)?;
    Ok((
        o.image,
        RefineOutcome {
            start: Some(best.1),
            end: Some(o.loss),
            queries: oracle.used() - used_before,
            prior_share: o.prior_share,
        },
    ))
}
