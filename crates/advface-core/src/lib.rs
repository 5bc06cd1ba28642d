//! Vocabulary of advface: the types every other crate speaks.
//!
//! Data flows as: image files -> [`RgbImage`] (8-bit, what is attacked and stored) ->
//! [`PixelBatch`] (f32 in `[0, 1]`, NCHW, what differentiable models see) -> a model or an
//! [`Oracle`] -> [`Descriptor`]s -> scores. Preprocessing (resize, mean, std) belongs to the
//! model or oracle, never to the caller.

pub mod descriptor;
pub mod embedder;
pub mod error;
pub mod oracle;
pub mod pixels;

pub use descriptor::Descriptor;
pub use embedder::{Differentiable, EmbedError, Embedder};
pub use error::{CoreError, OracleError};
pub use oracle::{Oracle, QueryStats};
pub use pixels::{PixelBatch, RgbImage};

/// Side of the attacked crop in pixels (PROTOCOL.md: rows and columns 69..181 of LFW).
pub const CROP_SIZE: u32 = 112;

/// Same-person threshold of the black box on the L2 distance between descriptors
/// (face-api.js / dlib: 0.6).
pub const MATCH_THRESHOLD: f32 = 0.6;

/// SSIM limit of the MCS2018 challenge: no adversarial image may go below it.
pub const SSIM_LIMIT: f64 = 0.95;
