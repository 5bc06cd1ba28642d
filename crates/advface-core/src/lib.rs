//! Vocabulary of advface: the types every other crate speaks.
//!
//! Data flows as: image files -> [`RgbImage`] (8-bit, what is attacked and stored) ->
//! [`PixelBatch`] (f32 in `[0, 1]`, NCHW, what differentiable models see) -> a model or an
//! [`Oracle`] -> [`Descriptor`]s -> scores. Preprocessing (resize, mean, std) belongs to the
//! model or oracle, never to the caller. What an attack wants of the descriptors is an
//! [`Objective`] (impersonate the targets, or dodge one's own), measured with a [`Metric`]
//! (L2 or cosine, with the black box's same-person threshold).

pub mod descriptor;
pub mod embedder;
pub mod error;
pub mod objective;
pub mod oracle;
pub mod pixels;
pub mod rng;
pub mod shard;

pub use descriptor::Descriptor;
pub use embedder::{Differentiable, EmbedError, Embedder};
pub use error::{CoreError, OracleError};
pub use objective::{mean_distance, Metric, Objective};
pub use oracle::{Oracle, QueryStats};
pub use pixels::{PixelBatch, RgbImage};
pub use shard::Shard;

/// Side of the attacked crop in pixels (PROTOCOL.md: rows and columns 69..181 of LFW).
pub const CROP_SIZE: u32 = 112;

/// Same-person threshold of the black box on the L2 distance between descriptors
/// (face-api.js / dlib: 0.6), as f32; code that compares distances takes a [`Metric`]
/// ([`Metric::FACE_API`] holds the f64 0.6).
pub const MATCH_THRESHOLD: f32 = 0.6;

/// SSIM limit of the MCS2018 challenge: no adversarial image may go below it.
pub const SSIM_LIMIT: f64 = 0.95;
