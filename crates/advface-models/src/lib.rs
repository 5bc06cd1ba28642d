//! Face descriptor networks in burn, the weight loaders they need, and the zoo that turns a
//! model name into one of them.
//!
//! - [`zoo`]: the one place a model name (`faceapi`, `student`, a run folder, a `.weights`
//!   file, a face-api.js manifest) becomes an [`advface_core::Embedder`] or an
//!   [`advface_core::Differentiable`] model, with its [`zoo::Provenance`] (the name and
//!   weight hashes runs record). Every command resolves `--model` / `--students` here.
//! - [`faceapi`]: face-api.js `FaceRecognitionNet` (dlib ResNet-29, 128-d), the black box of
//!   the LFW-MCS benchmark. Use [`FaceApi`]: it takes a [`advface_core::PixelBatch`] and
//!   returns descriptors and input gradients, with no burn type in its API. Inside:
//!   `weights` (what both paths share), `net` (the burn network, [`FaceApiNet`]) and `fast`
//!   (the forward-only kernel, [`FaceApiFast`], what [`FaceApi`]'s
//!   [`advface_core::Embedder::embed`] runs); the two paths never import each other.
//! - [`student`]: student CNNs distilled from the black box, one file per architecture
//!   (ResNet-18/34, dlib-like, MobileFaceNet), the trainer ([`StudentTrainer`]: bytes in,
//!   descriptors and gradients out, no burn type), the weight file format, and
//!   [`StudentEmbedder`] (a saved student as a model).
//! - [`tfjs`]: strict loader for TensorFlow.js weights manifests.

pub mod faceapi;
pub mod student;
pub mod tfjs;
pub mod zoo;

pub use faceapi::{DescriptorsAndGrad, FaceApi, FaceApiError, FaceApiFast, FaceApiNet};
pub use student::{Arch, Student, StudentConfig, StudentEmbedder, StudentError, StudentTrainer};
pub use tfjs::{FileDigest, TfjsError, TfjsWeights};
pub use zoo::{ModelSource, Provenance, ZooError};
