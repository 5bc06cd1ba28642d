//! The held-out validation split, by identity: every sample of one person is on the
//! same side, so validation measures how a student does on faces it never saw, as
//! attack-identity crops will be.

use sha2::{Digest, Sha256};

/// Share of identities held out for validation unless told otherwise, in percent.
/// 5% of the ~5,500 pool identities is enough for a stable validation MSE while
/// keeping 95% of the data for training.
pub const DEFAULT_VAL_PERCENT: u32 = 5;

/// Whether identity `name` is in the validation split: the bytes 8..16 of SHA-256 of the
/// UTF-8 name, read as a big-endian u64, modulo 100, are below `val_percent` (values over
/// 100 act as 100).
///
/// Bytes 8..16 rather than the first byte, which already decides the attack identities
/// (PROTOCOL.md), so the two choices do not depend on each other. Deterministic and
/// independent of which other identities exist, so adding images never moves a person
/// from one side to the other.
pub fn is_validation_identity(name: &str, val_percent: u32) -> bool {
    let d = Sha256::digest(name.as_bytes());
    let v = u64::from_be_bytes(d[8..16].try_into().expect("8 bytes"));
    v % 100 < u64::from(val_percent.min(100))
}

/// The identity of a sample key or crops-relative path: everything before the first `/`
/// (`"Aaron_Eckhart/Aaron_Eckhart_0001.png#3"` -> `"Aaron_Eckhart"`); the whole key when
/// it has no `/`.
pub fn identity_of_key(key: &str) -> &str {
    key.split_once('/').map_or(key, |(name, _)| name)
}

/// Positions of samples in the training and validation sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split {
    /// Indices into the keys given to [`split_by_identity`], ascending.
    pub train: Vec<usize>,
    /// Indices into the keys given to [`split_by_identity`], ascending.
    pub val: Vec<usize>,
}

/// Splits sample keys by identity with [`is_validation_identity`].
///
/// ```
/// use advface_distill::{split_by_identity, identity_of_key};
/// let keys = ["A/A_0001.png#0", "B/B_0001.png#0", "A/A_0001.png#1"];
/// let s = split_by_identity(&keys, 50);
/// assert_eq!(s.train.len() + s.val.len(), 3);
/// // Both samples of A are on the same side.
/// assert_eq!(s.val.contains(&0), s.val.contains(&2));
/// ```
pub fn split_by_identity<S: AsRef<str>>(keys: &[S], val_percent: u32) -> Split {
    let mut split = Split::default();
    let mut memo: std::collections::HashMap<&str, bool> = std::collections::HashMap::new();
    for (i, key) in keys.iter().enumerate() {
        let name = identity_of_key(key.as_ref());
        let val = *memo
            .entry(name)
            .or_insert_with(|| is_validation_identity(name, val_percent));
        if val {
            split.val.push(i);
        } else {
            split.train.push(i);
        }
    }
    split
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn about_val_percent_of_identities_are_held_out() {
        let n = 10_000;
        let held = (0..n)
            .filter(|i| is_validation_identity(&format!("Person_{i}"), 5))
            .count();
        assert!((400..=600).contains(&held), "{held}");
        assert!((0..100).all(|i| !is_validation_identity(&format!("P{i}"), 0)));
        assert!((0..100).all(|i| is_validation_identity(&format!("P{i}"), 100)));
    }

    #[test]
    fn no_identity_is_on_both_sides() {
        let keys: Vec<String> = (0..300)
            .flat_map(|i| (0..3).map(move |k| format!("P{}/P{}_0001.png#{k}", i % 50, i % 50)))
            .collect();
        let s = split_by_identity(&keys, 20);
        assert_eq!(s.train.len() + s.val.len(), keys.len());
        let ids = |v: &[usize]| -> std::collections::HashSet<&str> {
            v.iter().map(|&i| identity_of_key(&keys[i])).collect()
        };
        assert!(ids(&s.train).is_disjoint(&ids(&s.val)));
        assert!(!s.val.is_empty() && !s.train.is_empty());
    }
}
