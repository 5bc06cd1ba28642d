//! The combinations of target descriptors the 2nd-place team cycled through.

/// Every non-empty subset of `0..n` as index lists, in the order the loop visits them: all
/// targets first, then the singles, pairs, triples, ... (for `n = 5`: 1 + 5 + 10 + 10 + 5 =
/// 31 subsets; the issue text counts 28, which no grouping of the five sizes gives).
///
/// Each subset is aimed at through the mean of its descriptors, so the attack is pulled in
/// turn towards each target, each pair of targets, ... and the whole set, which is what
/// MCS2018's 2nd-place team found to move the mean distance to all five furthest.
pub fn target_combinations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return Vec::new();
    }
    let mut out = vec![(0..n).collect::<Vec<_>>()];
    for size in 1..n {
        let mut idx: Vec<usize> = (0..size).collect();
        loop {
            out.push(idx.clone());
            // Next combination in lexicographic order.
            let mut i = size;
            while i > 0 && idx[i - 1] == n - size + i - 1 {
                i -= 1;
            }
            if i == 0 {
                break;
            }
            idx[i - 1] += 1;
            for j in i..size {
                idx[j] = idx[j - 1] + 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_targets_give_31_distinct_subsets_all_first() {
        let c = target_combinations(5);
        assert_eq!(c.len(), 31);
        assert_eq!(c[0], vec![0, 1, 2, 3, 4]);
        assert_eq!(c[1], vec![0]);
        assert_eq!(c[6], vec![0, 1]);
        assert_eq!(c[30], vec![1, 2, 3, 4]);
        let mut set: Vec<Vec<usize>> = c.clone();
        set.sort();
        set.dedup();
        assert_eq!(set.len(), 31);
        assert_eq!(target_combinations(1), vec![vec![0]]);
        assert!(target_combinations(0).is_empty());
    }
}
