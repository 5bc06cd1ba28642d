//! The attacks' seeded generator: SplitMix64 from advface-core's one RNG module (every
//! random choice of an attack is reproducible from its seed; the stream is fixed forever).

/// SplitMix64, seeded as the attacks always seeded it ([`advface_core::rng::SplitMix64`]).
pub use advface_core::rng::SplitMix64 as Rng;
