//! Black-box adapters: everything that stands between an attack and the face-recognition
//! model it may only query.
//!
//! - [`LocalOracle`]: a model in this process, counted as a black box (one image, one query).
//! - [`Budgeted`]: a hard query budget in front of any oracle.
//! - [`Cached`]: answers remembered (in memory or on disk); cached answers are not queries.
//! - [`http`]: the black box as an HTTP service ([`serve`]) and its client ([`HttpOracle`]).
//!
//! Wrappers compose: `Cached<Budgeted<HttpOracle>>` spends the budget only on images not
//! already cached.
//!
//! # Example
//! A model served as a black box on a free loopback port, queried over HTTP under a budget:
//!
//! ```
//! use std::sync::Arc;
//! use advface_core::{Descriptor, EmbedError, Embedder, Oracle, PixelBatch, RgbImage};
//! use advface_oracle::{serve, Budgeted, HttpOracle, LocalOracle, ServeConfig};
//!
//! /// A stand-in model: 128 components, the first three the channel means.
//! struct Means;
//! impl Embedder for Means {
//!     fn name(&self) -> String { "means".into() }
//!     fn descriptor_len(&self) -> usize { 128 }
//!     fn embed(&self, batch: &PixelBatch) -> Result<Vec<Descriptor>, EmbedError> {
//!         let [n, _, h, w] = batch.shape();
//!         Ok(batch.as_slice().chunks(3 * h * w).take(n).map(|item| {
//!             let mut d = vec![0.0; 128];
//!             for c in 0..3 {
//!                 d[c] = item[c * h * w..(c + 1) * h * w].iter().sum::<f32>() / (h * w) as f32;
//!             }
//!             Descriptor(d)
//!         }).collect())
//!     }
//! }
//!
//! let black_box = Arc::new(LocalOracle::new(Arc::new(Means)));
//! let server = serve(black_box, ServeConfig {
//!     addr: "127.0.0.1:0".parse()?,
//!     budget: Some(100),
//!     ..Default::default()
//! })?;
//! let remote = Budgeted::new(HttpOracle::connect(&server.url())?, 10);
//! let face = RgbImage::filled(112, 112, [255, 0, 0]);
//! let d = remote.describe(&[face])?;
//! assert_eq!(d[0].as_slice()[..3], [1.0, 0.0, 0.0]);
//! assert_eq!(remote.remaining(), 9);
//! assert_eq!(remote.inner().health()?.queries, 1);
//! server.shutdown();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod budget;
pub mod cache;
pub mod http;
pub mod local;

pub use budget::{BudgetCounter, Budgeted, OverBudget};
pub use cache::{cache_key, Cached, CACHE_FILE_NAME};
pub use http::{
    serve, DescribeAnswer, ErrorAnswer, Health, HttpConfig, HttpConfigError, HttpOracle,
    RetryPolicy, ServeConfig, ServeError, ServerHandle,
};
pub use local::{LocalOracle, DEFAULT_CHUNK};
