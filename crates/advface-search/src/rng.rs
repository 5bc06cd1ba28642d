//! The search's seeded generator: xoshiro256** seeded through SplitMix64, from
//! advface-core's one RNG module. It does not reproduce numpy's stream: results match scipy
//! in distribution, not bit for bit.

/// xoshiro256** ([`advface_core::rng::Xoshiro256`]).
pub use advface_core::rng::Xoshiro256 as Rng;
