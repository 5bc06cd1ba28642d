//! How well a student reproduces the black box on crops no student ever sees: the attack
//! identities' crops (the prepared crops folder minus the distillation list).
//!
//! 1. [`eval_images`]: every `*.png` under the crops folder, sorted, minus the entries of
//!    the distillation list, cut to a limit;
//! 2. [`evaluate`]: both models describe the crops in batches of [`EVAL_BATCH`]; the
//!    student's descriptors are scored against the black box's with [`metrics`] (R^2, MSE
//!    per element, mean cosine) into an [`EvalReport`].

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use advface_core::{CoreError, EmbedError, Embedder, Oracle, OracleError, PixelBatch};
use advface_image::ImageError;
use serde::{Deserialize, Serialize};

use crate::train::metrics;

/// Crops per call to the student and to the black box.
pub const EVAL_BATCH: usize = 32;

/// Error of [`eval_images`] and [`evaluate`].
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A file or folder could not be read.
    #[error("reading {}", path.display())]
    Read {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Nothing is left to measure.
    #[error(
        "no crop in {} outside {}: give the crops folder written by `advface prepare`",
        crops.display(),
        exclude.display()
    )]
    NoImages {
        /// The crops folder.
        crops: PathBuf,
        /// The distillation list.
        exclude: PathBuf,
    },
    /// The student and the black box give descriptors of different lengths.
    #[error(
        "descriptor length mismatch: the black box '{black_box}' gives {black_box_len}, the \
         student {student} gives {student_len}"
    )]
    LengthMismatch {
        /// The black box's name.
        black_box: String,
        /// Its descriptor length.
        black_box_len: usize,
        /// The student's name.
        student: String,
        /// Its descriptor length.
        student_len: usize,
    },
    /// A crop could not be read.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The crops do not make a batch (sizes differ).
    #[error(transparent)]
    Batch(#[from] CoreError),
    /// The student failed.
    #[error(transparent)]
    Student(#[from] EmbedError),
    /// The black box failed.
    #[error(transparent)]
    BlackBox(#[from] OracleError),
}

fn read_err(path: &Path) -> impl FnOnce(std::io::Error) -> EvalError + '_ {
    move |source| EvalError::Read {
        path: path.to_path_buf(),
        source,
    }
}

/// What `advface distill eval` prints (one JSON line) and writes with `--json`. The field
/// order is the output's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// The student's name.
    pub student: String,
    /// SHA-256 of the student's weights file, as hex.
    pub weights_sha256: String,
    /// Crops measured.
    pub images: usize,
    /// R^2 of the student's descriptors against the black box's ([`crate::Metrics::r2`]).
    pub r2: f64,
    /// Mean squared error per descriptor element.
    pub mse: f64,
    /// Mean cosine similarity.
    pub cos: f64,
    /// The black box's name.
    pub black_box: String,
    /// Seconds spent describing and scoring (after loading).
    pub seconds: f64,
}

/// Every `*.png` under `dir`, as `/`-separated paths relative to it, sorted.
pub fn list_pngs(dir: &Path) -> Result<Vec<String>, EvalError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(read_err(&d))? {
            let p = e.map_err(read_err(&d))?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "png") {
                let rel = p.strip_prefix(dir).expect("under dir");
                out.push(
                    rel.components()
                        .map(|c| c.as_os_str().to_string_lossy())
                        .collect::<Vec<_>>()
                        .join("/"),
                );
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The crops to measure: [`list_pngs`] of `crops` minus the lines of the distillation list
/// `exclude` (crops-relative paths), the first `limit` of them. Refuses an empty result.
pub fn eval_images(
    crops: &Path,
    exclude: &Path,
    limit: Option<usize>,
) -> Result<Vec<String>, EvalError> {
    let excluded: HashSet<String> = std::fs::read_to_string(exclude)
        .map_err(read_err(exclude))?
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    let mut images: Vec<String> = list_pngs(crops)?
        .into_iter()
        .filter(|p| !excluded.contains(p))
        .collect();
    if let Some(n) = limit {
        images.truncate(n);
    }
    if images.is_empty() {
        return Err(EvalError::NoImages {
            crops: crops.to_path_buf(),
            exclude: exclude.to_path_buf(),
        });
    }
    Ok(images)
}

/// Describes `images` (paths relative to `crops`) with the student and the black box, in
/// batches of [`EVAL_BATCH`], and scores the student against the black box. `progress` is
/// told the number of crops of each finished batch. The black box's descriptor length, when
/// it states one, must be the student's.
pub fn evaluate<S, O>(
    student: &S,
    weights_sha256: &str,
    oracle: &O,
    crops: &Path,
    images: &[String],
    mut progress: impl FnMut(usize),
) -> Result<EvalReport, EvalError>
where
    S: Embedder + ?Sized,
    O: Oracle + ?Sized,
{
    let len = student.descriptor_len();
    if let Some(l) = oracle.descriptor_len() {
        if l != len {
            return Err(EvalError::LengthMismatch {
                black_box: oracle.name(),
                black_box_len: l,
                student: student.name(),
                student_len: len,
            });
        }
    }
    let start = Instant::now();
    let (mut pred, mut truth) = (Vec::new(), Vec::new());
    for chunk in images.chunks(EVAL_BATCH) {
        let ims: Vec<_> = chunk
            .iter()
            .map(|p| advface_image::read_image(&crops.join(p)))
            .collect::<Result<_, _>>()?;
        let batch = PixelBatch::from_images(&ims)?;
        for d in student.embed(&batch)? {
            pred.extend_from_slice(d.as_slice());
        }
        for d in oracle.describe(&ims)? {
            // A black box that states no length is held to the student's here.
            if d.len() != len {
                return Err(EvalError::LengthMismatch {
                    black_box: oracle.name(),
                    black_box_len: d.len(),
                    student: student.name(),
                    student_len: len,
                });
            }
            truth.extend_from_slice(d.as_slice());
        }
        progress(chunk.len());
    }
    let m = metrics(&pred, &truth, images.len(), len);
    Ok(EvalReport {
        student: student.name(),
        weights_sha256: weights_sha256.to_string(),
        images: images.len(),
        r2: m.r2,
        mse: m.mse,
        cos: m.cos,
        black_box: oracle.name(),
        seconds: start.elapsed().as_secs_f64(),
    })
}
