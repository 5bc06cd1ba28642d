//! The run log of a descriptor store: one JSON line per `collect` run, finished or not,
//! appended to `<store>/collect-runs.jsonl`, so every store says how it was made (what was
//! asked, with which settings, what it cost and how it ended).
//!
//! # Format
//! One [`CollectRun`] a line, keys in alphabetical order (the order the line has always
//! had); the keys of a finished run (`images`, `samples_wanted`, `stored_before`,
//! `new_samples`, `cached`, `skipped`) and of a failed one (`error`) are present only for
//! that outcome.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::collect::{CollectConfig, CollectError, CollectReport};

/// File name of the run log in a store folder.
pub const RUN_LOG_FILE: &str = "collect-runs.jsonl";

/// One line of the run log. Fields are in alphabetical order: serialised, they give the
/// keys in the order of the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectRun {
    /// Images per black-box call ([`CollectConfig::batch`]).
    pub batch: usize,
    /// The run's query budget, if any (`null` without one).
    pub budget: Option<u64>,
    /// Finished runs: answers that came from an oracle-side cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached: Option<u64>,
    /// Augmented copies per image ([`CollectConfig::copies`]).
    pub copies: u32,
    /// Failed runs: the error and its causes on one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Finished runs: distinct images in the pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<usize>,
    /// The LFW folder, as given.
    pub lfw: PathBuf,
    /// The pool list, as given.
    pub list: PathBuf,
    /// SHA-256 of the pool list's bytes, as hex.
    pub list_sha256: String,
    /// Finished runs: samples added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_samples: Option<usize>,
    /// The black box the store is tied to (its identity).
    pub oracle: String,
    /// Black-box queries made by this run (finished or not).
    pub queries: u64,
    /// The augmentation recipe ([`crate::AugmentConfig::recipe`]).
    pub recipe: String,
    /// Finished runs: samples wanted, `images * (copies + 1)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples_wanted: Option<usize>,
    /// Finished runs: images that could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<Vec<SkippedEntry>>,
    /// Samples in the store after the run.
    pub stored_after: usize,
    /// Finished runs: samples in the store before the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_before: Option<usize>,
    /// The program and version that wrote the line, e.g. `advface 0.1.0`.
    pub tool: String,
    /// When the line was written, seconds since the Unix epoch.
    pub unix_time: u64,
}

/// An image a finished run skipped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkippedEntry {
    /// Its crops-relative path.
    pub image: String,
    /// Why.
    pub reason: String,
}

/// What a run was asked to do, known before it starts ([`CollectRun::new`]).
#[derive(Debug, Clone)]
pub struct CollectRunRequest<'a> {
    /// The program and version, e.g. `advface 0.1.0`.
    pub tool: String,
    /// The LFW folder, as given.
    pub lfw: &'a Path,
    /// The pool list, as given.
    pub list: &'a Path,
    /// The pool list's bytes (hashed).
    pub list_bytes: &'a [u8],
    /// The black box's identity.
    pub oracle: &'a str,
    /// The query budget, if any.
    pub budget: Option<u64>,
    /// The collection settings.
    pub config: &'a CollectConfig,
}

impl CollectRun {
    /// The line of a run that asked `request`, made `queries` queries, left `stored_after`
    /// samples in the store and ended with `result`; stamped with the current time.
    pub fn new(
        request: &CollectRunRequest<'_>,
        queries: u64,
        stored_after: usize,
        result: Result<&CollectReport, &CollectError>,
    ) -> Self {
        let mut run = CollectRun {
            batch: request.config.batch,
            budget: request.budget,
            cached: None,
            copies: request.config.copies,
            error: None,
            images: None,
            lfw: request.lfw.to_path_buf(),
            list: request.list.to_path_buf(),
            list_sha256: format!("{:x}", Sha256::digest(request.list_bytes)),
            new_samples: None,
            oracle: request.oracle.to_string(),
            queries,
            recipe: request.config.augment.recipe(),
            samples_wanted: None,
            skipped: None,
            stored_after,
            stored_before: None,
            tool: request.tool.clone(),
            unix_time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        match result {
            Ok(r) => {
                run.images = Some(r.images);
                run.samples_wanted = Some(r.samples_wanted);
                run.stored_before = Some(r.stored_before);
                run.new_samples = Some(r.new_samples);
                run.cached = Some(r.cached);
                run.skipped = Some(
                    r.skipped
                        .iter()
                        .map(|s| SkippedEntry {
                            image: s.rel.clone(),
                            reason: s.reason.clone(),
                        })
                        .collect(),
                );
            }
            Err(e) => run.error = Some(error_chain(e)),
        }
        run
    }
}

/// Error of [`append_run_log`] and [`read_run_log`].
#[derive(Debug, thiserror::Error)]
pub enum RunLogError {
    /// The log could not be opened.
    #[error("opening the run log {}", path.display())]
    Open {
        /// The log file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The line could not be written and synced.
    #[error("writing the run log {}", path.display())]
    Write {
        /// The log file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A line is not a run record.
    #[error("{}: line {line} is not a run record: {reason}", path.display())]
    BadLine {
        /// The log file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Why.
        reason: String,
    },
}

/// Appends `run` as one line to `<store_dir>/`[`RUN_LOG_FILE`] and syncs it.
pub fn append_run_log(store_dir: &Path, run: &CollectRun) -> Result<(), RunLogError> {
    let path = store_dir.join(RUN_LOG_FILE);
    let line = serde_json::to_string(run).expect("a run record serialises");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|source| RunLogError::Open {
            path: path.clone(),
            source,
        })?;
    writeln!(f, "{line}")
        .and_then(|()| f.sync_data())
        .map_err(|source| RunLogError::Write { path, source })
}

/// Every line of `<store_dir>/`[`RUN_LOG_FILE`], oldest first (none when there is no log).
pub fn read_run_log(store_dir: &Path) -> Result<Vec<CollectRun>, RunLogError> {
    let path = store_dir.join(RUN_LOG_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(RunLogError::Open { path, source }),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| RunLogError::BadLine {
                path: path.clone(),
                line: i + 1,
                reason: e.to_string(),
            })
        })
        .collect()
}

/// An error and its causes on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::SkippedImage;

    fn request<'a>(cfg: &'a CollectConfig, list: &'a [u8]) -> CollectRunRequest<'a> {
        CollectRunRequest {
            tool: "advface 0.1.0".into(),
            lfw: Path::new("data/lfw"),
            list: Path::new("distill_list.txt"),
            list_bytes: list,
            oracle: "faceapi",
            budget: None,
            config: cfg,
        }
    }

    /// The line as the CLI wrote it before the record was typed: `serde_json::json!`
    /// (keys sorted) of the same values.
    fn untyped(run: &CollectRun, outcome: serde_json::Value) -> String {
        let mut line = serde_json::json!({
            "tool": run.tool,
            "unix_time": run.unix_time,
            "lfw": run.lfw,
            "list": run.list,
            "list_sha256": run.list_sha256,
            "oracle": run.oracle,
            "budget": run.budget,
            "copies": run.copies,
            "batch": run.batch,
            "recipe": run.recipe,
            "queries": run.queries,
            "stored_after": run.stored_after,
        });
        if let (Some(a), serde_json::Value::Object(b)) = (line.as_object_mut(), outcome) {
            a.extend(b);
        }
        line.to_string()
    }

    #[test]
    fn a_finished_run_line_is_the_untyped_line_byte_for_byte() {
        let cfg = CollectConfig::default();
        let list = b"Aaron/Aaron_0001.png\n";
        let report = CollectReport {
            images: 3,
            samples_wanted: 3,
            stored_before: 1,
            stored_after: 3,
            new_samples: 2,
            queries: 2,
            cached: 0,
            skipped: vec![SkippedImage {
                rel: "B/B_0001.png".into(),
                path: "x.jpg".into(),
                reason: "bad \"jpeg\"".into(),
            }],
        };
        let mut req = request(&cfg, list);
        req.list = Path::new("pool.txt");
        req.budget = Some(10);
        let run = CollectRun::new(&req, 2, 3, Ok(&report));
        let want = untyped(
            &run,
            serde_json::json!({
                "images": 3, "samples_wanted": 3, "stored_before": 1, "new_samples": 2,
                "cached": 0,
                "skipped": [{"image": "B/B_0001.png", "reason": "bad \"jpeg\""}],
            }),
        );
        assert_eq!(serde_json::to_string(&run).unwrap(), want);
        assert_eq!(
            run.list_sha256,
            format!("{:x}", Sha256::digest(list)),
            "hex of the list's SHA-256"
        );
    }

    #[test]
    fn a_failed_run_line_is_the_untyped_line_and_reads_back() {
        let cfg = CollectConfig::default();
        let err = CollectError::Config("batch must be at least 1".into());
        let run = CollectRun::new(&request(&cfg, b""), 0, 0, Err(&err));
        let want = untyped(
            &run,
            serde_json::json!({ "error": "invalid collect setting: batch must be at least 1" }),
        );
        assert_eq!(serde_json::to_string(&run).unwrap(), want);

        let dir = tempfile::tempdir().unwrap();
        append_run_log(dir.path(), &run).unwrap();
        append_run_log(dir.path(), &run).unwrap();
        let text = std::fs::read_to_string(dir.path().join(RUN_LOG_FILE)).unwrap();
        assert_eq!(text, format!("{want}\n{want}\n"));
        assert_eq!(read_run_log(dir.path()).unwrap(), vec![run.clone(), run]);
    }
}
