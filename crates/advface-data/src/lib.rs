//! The LFW-MCS benchmark protocol (`PROTOCOL.md`): which identities are attacked, which
//! images may train students, the pairs and their file format, and `prepare`, which turns
//! LFW deep-funneled JPEGs into the protocol's 112 x 112 PNG crops.

pub mod pairs;
pub mod prepare;
pub mod protocol;

pub use pairs::{
    format_pairs, parse_pairs, read_pairs, write_pairs, Pair, PairsError, PAIRS_HEADER,
};
pub use prepare::{prepare, PrepareConfig, PrepareError, PrepareEvent, PrepareReport, Skipped};
pub use protocol::{
    crop_rel_path, is_attack_identity, LfwIndex, Protocol, ProtocolError, IMAGES_PER_SIDE,
    MIN_ATTACK_IMAGES,
};
