//! The zoo: the one place a model name becomes a model.
//!
//! Every command that takes `--model`, `--students` or `--student` resolves it here, so a
//! new victim or surrogate is one [`ModelSource`] variant and one arm of [`Zoo::load`].
//!
//! # Names
//! 1. `faceapi`: the face-api.js 1.7.15 network built into the binary (the benchmark's
//!    black box), [`FaceApi::embedded`].
//! 2. `student`: the shipped student, built into the binary ([`SHIPPED_STUDENT`], trained
//!    by `advface distill train`; its run folder is `models/student`). A [`Zoo`] made with
//!    [`Zoo::from_env`] loads the file [`STUDENT_ENV`] (`ADVFACE_STUDENT`) names instead,
//!    when that variable is set.
//! 3. A folder: a `distill train` run folder, its `student.weights`.
//! 4. A file ending in `.weights`: a student weight file.
//! 5. Any other file: a TF.js weights manifest of the face-api.js network
//!    (`face_recognition_model-weights_manifest.json`, its shard next to it).
//!
//! Names are tried in this order (a folder called `faceapi` is not looked at).
//!
//! # Provenance
//! Each model comes with a [`Provenance`]: the name the model gives itself
//! ([`Embedder::name`]) and the SHA-256 of its weights, the two strings runs record
//! (`config.json`'s `models`): `student (shipped)` and the hash of the built-in bytes,
//! `student:PATH` and the hash of the file, or `faceapi` and the hashes of the manifest and
//! its shard joined by a comma.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use advface_core::{Differentiable, Embedder};

use crate::faceapi::{FaceApi, FaceApiError};
use crate::student::{StudentEmbedder, StudentError};
use crate::tfjs::sha256_hex;

/// The names `--model` understands besides paths, for messages.
pub const MODEL_NAMES: &str = "faceapi, student";

/// The shipped student's weights, built into the binary: trained by `advface distill
/// train` on the distillation pool; its run folder (config, log, command) is committed in
/// `models/student`.
pub const SHIPPED_STUDENT: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../models/student/student.weights"
));

/// Where [`SHIPPED_STUDENT`] is in the repository (errors about it name this path).
pub const SHIPPED_STUDENT_PATH: &str = "models/student/student.weights";

/// The name the shipped student gives itself, recorded in run configs.
pub const SHIPPED_STUDENT_NAME: &str = "student (shipped)";

/// The environment variable [`Zoo::from_env`] reads: a student weight file that `student`
/// then names instead of the shipped one.
pub const STUDENT_ENV: &str = "ADVFACE_STUDENT";

/// The weight file a `distill train` run folder holds.
pub const RUN_WEIGHTS_FILE: &str = "student.weights";

/// What a model name resolves to, before anything is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// The face-api.js network built into the binary (`faceapi`).
    FaceApi,
    /// The student built into the binary (`student`).
    ShippedStudent,
    /// A student weight file: a run folder's `student.weights`, a `.weights` file, or the
    /// file [`STUDENT_ENV`] names.
    StudentFile(PathBuf),
    /// A TF.js weights manifest of the face-api.js network.
    FaceApiManifest(PathBuf),
}

impl ModelSource {
    /// Whether this is a student (a surrogate trained here), not the black box's network.
    pub fn is_student(&self) -> bool {
        matches!(
            self,
            ModelSource::ShippedStudent | ModelSource::StudentFile(_)
        )
    }
}

/// Where a model's weights came from, as runs record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// The model's own name ([`Embedder::name`]): `faceapi`, `student (shipped)`,
    /// `student:PATH`.
    pub name: String,
    /// Lower-case hex SHA-256 of the weights: of the weight file for a student; of the
    /// manifest and of its shard, joined by `,`, for face-api.js.
    pub sha256: String,
}

/// A model the zoo loaded, with its provenance.
pub struct Loaded<M: ?Sized> {
    /// The model.
    pub model: Arc<M>,
    /// Its name and weight hashes.
    pub provenance: Provenance,
    /// What its name resolved to.
    pub source: ModelSource,
}

impl<M: ?Sized> std::fmt::Debug for Loaded<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("provenance", &self.provenance)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Error of the zoo: each names the file or name at fault and what to give instead.
#[derive(Debug, thiserror::Error)]
pub enum ZooError {
    /// The name is neither a known model nor an existing path.
    #[error(
        "unknown model '{name}': give one of {MODEL_NAMES}, a training run folder (holding \
         {RUN_WEIGHTS_FILE}), a .weights file, or the path of a TF.js weights manifest \
         (face_recognition_model-weights_manifest.json)"
    )]
    UnknownModel {
        /// The name given.
        name: String,
    },
    /// A folder was given that holds no student weights.
    #[error(
        "{folder}: no {RUN_WEIGHTS_FILE} in this folder: give a `distill train` run folder \
         that has saved its weights, or the .weights file itself",
        folder = folder.display()
    )]
    NoWeightsInFolder {
        /// The folder given.
        folder: PathBuf,
    },
    /// A student was asked for and the name is not one.
    #[error(
        "'{name}' is not a student: give `student`, a `distill train` run folder holding \
         {RUN_WEIGHTS_FILE}, or a .weights file"
    )]
    NotAStudent {
        /// The name given.
        name: String,
    },
    /// A weight file could not be read.
    #[error("reading {path}", path = path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A student weight file could not be loaded.
    #[error("loading the student {what}")]
    Student {
        /// The weight file.
        what: String,
        /// Why.
        #[source]
        source: Box<StudentError>,
    },
    /// The student built into the binary could not be loaded (a broken build).
    #[error("loading the shipped student")]
    ShippedStudent {
        /// Why.
        #[source]
        source: Box<StudentError>,
    },
    /// The face-api.js network could not be loaded.
    #[error("loading {what}")]
    FaceApi {
        /// `the embedded face-api.js model` or `the TF.js model PATH`.
        what: String,
        /// Why.
        #[source]
        source: Box<FaceApiError>,
    },
}

/// Resolves model names into models (see the [module docs](self) for the names).
///
/// ```
/// use advface_core::Embedder;
/// use advface_models::zoo::Zoo;
///
/// let loaded = Zoo::new().embedder("faceapi")?;
/// assert_eq!(loaded.model.name(), "faceapi");
/// assert_eq!(loaded.provenance.name, "faceapi");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Zoo {
    /// The file `student` names instead of the shipped student.
    student_file: Option<PathBuf>,
}

impl Zoo {
    /// A zoo where `student` is the shipped student.
    pub fn new() -> Self {
        Self::default()
    }

    /// A zoo where `student` is the file [`STUDENT_ENV`] names, when it is set (what the
    /// command line uses).
    pub fn from_env() -> Self {
        Self {
            student_file: std::env::var_os(STUDENT_ENV).map(PathBuf::from),
        }
    }

    /// The same zoo with `student` naming `file` (a student weight file) instead of the
    /// shipped student.
    pub fn with_student_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.student_file = Some(file.into());
        self
    }

    /// What `name` resolves to, without loading anything; an error names the path at fault
    /// and what to give instead.
    pub fn source(&self, name: &str) -> Result<ModelSource, ZooError> {
        match name {
            "faceapi" => return Ok(ModelSource::FaceApi),
            "student" => {
                return Ok(match &self.student_file {
                    Some(file) => ModelSource::StudentFile(file.clone()),
                    None => ModelSource::ShippedStudent,
                })
            }
            _ => {}
        }
        let path = Path::new(name);
        if path.is_dir() {
            let file = path.join(RUN_WEIGHTS_FILE);
            return if file.is_file() {
                Ok(ModelSource::StudentFile(file))
            } else {
                Err(ZooError::NoWeightsInFolder {
                    folder: path.to_path_buf(),
                })
            };
        }
        if path.is_file() {
            return Ok(if path.extension().is_some_and(|e| e == "weights") {
                ModelSource::StudentFile(path.to_path_buf())
            } else {
                ModelSource::FaceApiManifest(path.to_path_buf())
            });
        }
        Err(ZooError::UnknownModel { name: name.into() })
    }

    /// The model `name` names, for descriptors (a black box, a scorer's model).
    pub fn embedder(&self, name: &str) -> Result<Loaded<dyn Embedder>, ZooError> {
        let loaded = self.differentiable(name)?;
        Ok(Loaded {
            // Trait upcasting (Rust 1.86).
            model: loaded.model,
            provenance: loaded.provenance,
            source: loaded.source,
        })
    }

    /// The model `name` names, for gradients: any model the zoo knows (the face-api.js
    /// network gives the black box's own gradients: white-box use only).
    pub fn differentiable(&self, name: &str) -> Result<Loaded<dyn Differentiable>, ZooError> {
        self.load(self.source(name)?)
    }

    /// A student (`student`, a run folder, a `.weights` file) for gradients; any other name
    /// is [`ZooError::NotAStudent`], so that a black-box attack never takes the black box's
    /// own gradients by a slip of `--students`.
    pub fn student(&self, name: &str) -> Result<Loaded<dyn Differentiable>, ZooError> {
        let source = match self.source(name) {
            Ok(s) if s.is_student() => s,
            Ok(_) | Err(ZooError::UnknownModel { .. }) => {
                return Err(ZooError::NotAStudent { name: name.into() })
            }
            Err(e) => return Err(e),
        };
        self.load(source)
    }

    /// Loads what a name resolved to.
    pub fn load(&self, source: ModelSource) -> Result<Loaded<dyn Differentiable>, ZooError> {
        let (model, sha256): (Arc<dyn Differentiable>, String) = match &source {
            ModelSource::FaceApi => {
                let fa = FaceApi::embedded().map_err(|source| ZooError::FaceApi {
                    what: "the embedded face-api.js model".into(),
                    source: Box::new(source),
                })?;
                let sha = faceapi_sha256(&fa);
                (Arc::new(fa), sha)
            }
            ModelSource::FaceApiManifest(path) => {
                let fa = FaceApi::from_manifest(path).map_err(|source| ZooError::FaceApi {
                    what: format!("the TF.js model {}", path.display()),
                    source: Box::new(source),
                })?;
                let sha = faceapi_sha256(&fa);
                (Arc::new(fa), sha)
            }
            ModelSource::ShippedStudent => {
                let student = StudentEmbedder::from_bytes(
                    SHIPPED_STUDENT,
                    Path::new(SHIPPED_STUDENT_PATH),
                    SHIPPED_STUDENT_NAME.into(),
                )
                .map_err(|source| ZooError::ShippedStudent {
                    source: Box::new(source),
                })?;
                (Arc::new(student), sha256_hex(SHIPPED_STUDENT))
            }
            ModelSource::StudentFile(file) => {
                let bytes = std::fs::read(file).map_err(|source| ZooError::Read {
                    path: file.clone(),
                    source,
                })?;
                let student = StudentEmbedder::from_file_bytes(&bytes, file).map_err(|source| {
                    ZooError::Student {
                        what: file.display().to_string(),
                        source: Box::new(source),
                    }
                })?;
                (Arc::new(student), sha256_hex(&bytes))
            }
        };
        Ok(Loaded {
            provenance: Provenance {
                name: model.name(),
                sha256,
            },
            model,
            source,
        })
    }
}

/// The SHA-256 of the manifest and of the shard face-api.js was read from, joined by `,`
/// (in the order [`FaceApi::files`] lists them), as run configs record it.
pub fn faceapi_sha256(model: &FaceApi) -> String {
    model
        .files()
        .iter()
        .map(|f| f.sha256.clone())
        .collect::<Vec<_>>()
        .join(",")
}
