//! How many calls may be sent again to another replica: a retry budget in
//! the manner of linkerd's and Finagle's. Each first attempt deposits a
//! fraction of a retry; each retry withdraws a whole one. Under a broad
//! failure the retries stay a bounded share of the traffic (here 20 %, plus
//! a small reserve for quiet periods) instead of multiplying the load on the
//! workers that are left.

use std::sync::atomic::{AtomicI64, Ordering};

/// Most retries one call may make.
pub const MAX_RETRIES_PER_CALL: usize = 2;

/// Tenths of a retry.
const DEPOSIT: i64 = 2;
const WITHDRAW: i64 = 10;
/// The reserve: 10 retries in a row with no traffic before them.
const RESERVE: i64 = 100;
/// The most the budget holds: a burst of 100 retries.
const CEILING: i64 = 1000;

#[derive(Debug)]
pub struct RetryBudget {
    tenths: AtomicI64,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            tenths: AtomicI64::new(RESERVE),
        }
    }
}

impl RetryBudget {
    /// A first attempt: adds to the budget.
    pub fn deposit(&self) {
        let _ = self
            .tenths
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some((t + DEPOSIT).min(CEILING))
            });
    }

    /// Whether one retry may go; takes it from the budget if so.
    pub fn withdraw(&self) -> bool {
        self.tenths
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                (t >= WITHDRAW).then_some(t - WITHDRAW)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_stay_a_fifth_of_first_attempts_after_the_reserve() {
        let budget = RetryBudget::default();
        // The reserve: 10 retries with no traffic.
        assert_eq!((0..20).filter(|_| budget.withdraw()).count(), 10);
        for _ in 0..100 {
            budget.deposit();
        }
        assert_eq!((0..100).filter(|_| budget.withdraw()).count(), 20);
        assert!(!budget.withdraw());
    }
}
