//! A share of a list for job arrays: `--shard K/N` of `attack` and `score`.

use std::fmt;
use std::str::FromStr;

/// Every `count`-th item starting at `index` (0-based), written `K/N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    /// `K`: the first item of the share.
    pub index: usize,
    /// `N`: the number of shares.
    pub count: usize,
}

impl Default for Shard {
    /// [`Shard::ALL`].
    fn default() -> Self {
        Self::ALL
    }
}

impl Shard {
    /// The whole list (`0/1`).
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Share `index` of `count`.
    ///
    /// # Errors
    /// When not `0 <= index < count`.
    pub fn new(index: usize, count: usize) -> Result<Self, String> {
        if count == 0 || index >= count {
            return Err(format!("'{index}/{count}': need 0 <= K < N"));
        }
        Ok(Self { index, count })
    }

    /// Whether item `i` is in this share.
    pub fn contains(&self, i: usize) -> bool {
        self.count <= 1 || i % self.count == self.index
    }

    /// The items of this share among the first `first` of a list of `len` (all when
    /// `None`), in order.
    pub fn select(&self, len: usize, first: Option<usize>) -> Vec<usize> {
        (0..first.map_or(len, |n| n.min(len)))
            .filter(|&i| self.contains(i))
            .collect()
    }
}

impl FromStr for Shard {
    type Err = String;

    /// `K/N`, e.g. `0/4`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| format!("'{s}': give K/N, e.g. 0/4"))?;
        let k: usize = k
            .trim()
            .parse()
            .map_err(|_| format!("'{s}': K is not a number"))?;
        let n: usize = n
            .trim()
            .parse()
            .map_err(|_| format!("'{s}': N is not a number"))?;
        Shard::new(k, n).map_err(|_| format!("'{s}': need 0 <= K < N"))
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_a_list_and_parse_as_k_of_n() {
        let s: Shard = "1/3".parse().unwrap();
        assert_eq!(s, Shard { index: 1, count: 3 });
        assert_eq!(s.to_string(), "1/3");
        assert_eq!(s.select(10, None), vec![1, 4, 7]);
        assert_eq!(s.select(10, Some(5)), vec![1, 4]);
        let all: Vec<usize> = (0..3)
            .flat_map(|k| Shard::new(k, 3).unwrap().select(8, None))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(all, (0..8).collect::<Vec<_>>());
        assert_eq!(Shard::ALL.select(3, Some(9)), vec![0, 1, 2]);
        for bad in ["3/3", "1", "a/2", "1/b", "0/0"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        assert_eq!(
            "4/2".parse::<Shard>().unwrap_err(),
            "'4/2': need 0 <= K < N"
        );
    }
}
