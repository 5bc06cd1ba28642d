//! Test kit of the advface workspace, a dev-dependency only (never a dependency of a
//! library or of the binary): what the integration tests of several crates share.
//!
//! - [`paths`]: the repository, its committed `fixtures/`, the fixture LFW tree, and copies
//!   of it a test may damage;
//! - [`images`]: deterministic test images and exact comparison of descriptors;
//! - [`fakes`]: fake face models ([`FakeEmbedder`], the differentiable [`Linear`]) and a
//!   fake black box ([`FakeOracle`]). Fakes live here, never in a library.

pub mod fakes;
pub mod images;
pub mod paths;

pub use fakes::{local, FakeEmbedder, FakeOracle, Linear, FAKE_LEN};
pub use images::{bits, face, faces, sha256, textured_face};
pub use paths::{
    all_files, copy_dir, copy_lfw, fixture_lfw, fixtures, pillow_crops, repo_root, PillowCrop,
};
