//! A hard query budget: an oracle that refuses to answer past `N` queries.

use std::sync::atomic::{AtomicU64, Ordering};

use advface_core::{Descriptor, Oracle, OracleError, QueryStats, RgbImage};

/// A counter of queries against a fixed budget, safe to share between threads.
///
/// Queries are *reserved* before they are asked (compare-and-swap), so concurrent callers
/// can never together go past the budget, and *released* when they were not spent.
#[derive(Debug)]
pub struct BudgetCounter {
    budget: u64,
    used: AtomicU64,
}

/// A reservation that did not fit: what was already used when it was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBudget {
    /// The budget, in queries.
    pub budget: u64,
    /// Queries used or reserved when the reservation was refused.
    pub used: u64,
    /// Queries the refused reservation asked for.
    pub requested: u64,
}

impl BudgetCounter {
    /// A counter allowing `budget` queries, none used.
    pub fn new(budget: u64) -> Self {
        Self {
            budget,
            used: AtomicU64::new(0),
        }
    }

    /// The budget, in queries.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Queries used so far, including those reserved by calls still in flight.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// Queries that may still be reserved (`budget - used`).
    pub fn remaining(&self) -> u64 {
        self.budget.saturating_sub(self.used())
    }

    /// Reserves `k` queries, all or nothing: fails without reserving anything when
    /// `used + k > budget`.
    pub fn try_reserve(&self, k: u64) -> Result<(), OverBudget> {
        let mut current = self.used.load(Ordering::Acquire);
        loop {
            let next = match current.checked_add(k) {
                Some(next) if next <= self.budget => next,
                _ => {
                    return Err(OverBudget {
                        budget: self.budget,
                        used: current,
                        requested: k,
                    })
                }
            };
            match self.used.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => current = actual,
            }
        }
    }

    /// Gives back `k` reserved queries that were not spent.
    pub fn release(&self, k: u64) {
        // Never below zero, even if a caller releases more than it reserved.
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                Some(u.saturating_sub(k))
            });
    }
}

/// An oracle with a hard query budget.
///
/// A call asking for `k` images when `used + k > budget` fails with
/// [`OracleError::BudgetExhausted`] and answers nothing; so a budget of `N` answers exactly
/// `N` queries, even with many threads calling at once.
///
/// # What is charged
/// A call first reserves `k` queries. When it returns, the charge is cut down to the number
/// of queries the inner oracle reported (`inner.stats().queries`) during the call, never more
/// than `k`: a failed call gives back what it did not spend, and images the inner oracle
/// answered from a cache cost nothing. When other threads query the same inner oracle at the
/// same time their queries may be counted in that difference, so the charge errs on the side
/// of the budget (too much, never too little). A successful call whose inner oracle reported
/// fewer than `k` images (queries plus cached), which a correct oracle never does, is charged
/// `k`.
///
/// To spend the budget only on images not already cached, put the cache outside:
/// `Cached<Budgeted<O>>`.
#[derive(Debug)]
pub struct Budgeted<O> {
    inner: O,
    counter: BudgetCounter,
}

impl<O: Oracle> Budgeted<O> {
    /// Wraps `inner` with a budget of `budget` queries (images).
    pub fn new(inner: O, budget: u64) -> Self {
        Self {
            inner,
            counter: BudgetCounter::new(budget),
        }
    }

    /// The budget, in queries.
    pub fn budget(&self) -> u64 {
        self.counter.budget()
    }

    /// Queries charged so far, including reservations of calls in flight.
    pub fn used(&self) -> u64 {
        self.counter.used()
    }

    /// Queries that may still be asked.
    pub fn remaining(&self) -> u64 {
        self.counter.remaining()
    }

    /// The wrapped oracle.
    pub fn inner(&self) -> &O {
        &self.inner
    }

    /// Unwraps the inner oracle.
    pub fn into_inner(self) -> O {
        self.inner
    }
}

impl<O: Oracle> Oracle for Budgeted<O> {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn descriptor_len(&self) -> Option<usize> {
        self.inner.descriptor_len()
    }

    fn describe(&self, images: &[RgbImage]) -> Result<Vec<Descriptor>, OracleError> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let k = images.len() as u64;
        self.counter
            .try_reserve(k)
            .map_err(|o| OracleError::BudgetExhausted {
                oracle: self.inner.name(),
                budget: o.budget,
                used: o.used,
                requested: o.requested,
            })?;
        let before = self.inner.stats();
        let result = self.inner.describe(images);
        let after = self.inner.stats();
        let queries = after.queries.saturating_sub(before.queries);
        let cached = after.cached.saturating_sub(before.cached);
        let spent = match &result {
            // An oracle that does not count what it answers is charged in full.
            Ok(_) if queries.saturating_add(cached) < k => k,
            _ => queries.min(k),
        };
        self.counter.release(k - spent);
        result
    }

    fn stats(&self) -> QueryStats {
        self.inner.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_all_or_nothing() {
        let c = BudgetCounter::new(5);
        c.try_reserve(3).unwrap();
        let over = c.try_reserve(3).unwrap_err();
        assert_eq!(
            over,
            OverBudget {
                budget: 5,
                used: 3,
                requested: 3
            }
        );
        assert_eq!(c.used(), 3);
        c.try_reserve(2).unwrap();
        assert_eq!(c.remaining(), 0);
        c.release(4);
        assert_eq!(c.used(), 1);
        c.release(10);
        assert_eq!(c.used(), 0);
    }

    #[test]
    fn huge_requests_do_not_overflow() {
        let c = BudgetCounter::new(u64::MAX);
        c.try_reserve(10).unwrap();
        assert!(c.try_reserve(u64::MAX).is_err());
        assert_eq!(c.used(), 10);
    }

    #[test]
    fn concurrent_reservations_never_exceed_the_budget() {
        let c = BudgetCounter::new(1000);
        let granted = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..500 {
                        if c.try_reserve(1).is_ok() {
                            granted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(granted.load(Ordering::Relaxed), 1000);
        assert_eq!(c.used(), 1000);
    }
}
