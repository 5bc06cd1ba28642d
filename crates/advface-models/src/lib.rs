//! Face descriptor networks in burn, and the weight loaders they need.
//!
//! - [`faceapi`]: face-api.js `FaceRecognitionNet` (dlib ResNet-29, 128-d), the black box of
//!   the LFW-MCS benchmark. Use [`FaceApi`]: it takes a [`advface_core::PixelBatch`] and
//!   returns descriptors and input gradients, with no burn type in its API.
//! - [`faceapi_fast`]: the same network, forward only, without burn (im2col + GEMM); what
//!   [`FaceApi`]'s [`advface_core::Embedder::embed`] runs.
//! - [`student`]: student CNNs (truncated ResNet-18/34) distilled from the black box; use
//!   [`StudentTrainer`] (bytes in, descriptors and gradients out, no burn type).
//! - [`tfjs`]: strict loader for TensorFlow.js weights manifests.

pub mod faceapi;
pub mod faceapi_fast;
pub mod student;
pub mod tfjs;

pub use faceapi::{DescriptorsAndGrad, FaceApi, FaceApiError, FaceApiNet};
pub use faceapi_fast::FaceApiFast;
pub use student::{Arch, Student, StudentConfig, StudentEmbedder, StudentError, StudentTrainer};
pub use tfjs::{FileDigest, TfjsError, TfjsWeights};
