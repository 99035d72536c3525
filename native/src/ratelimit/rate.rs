//! One rate and the GCRA arithmetic on its theoretical arrival times, in the scaled integer
//! time the table keeps (see the parent module).

use super::Snapshot;
use crate::CoreError;

/// One rate: `limit` units per `period_ns`, with up to `capacity` units at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    limit: u64,
    period_ns: u64,
    capacity: u64,
}

impl Rate {
    /// `burst` is the bucket size; it defaults to `limit` (a full period's worth at once).
    pub fn new(limit: u64, period_ns: u64, burst: Option<u64>) -> Result<Self, CoreError> {
        let capacity = burst.unwrap_or(limit);
        if limit == 0 || period_ns == 0 || capacity == 0 {
            return Err(CoreError::InvalidLimit(format!(
                "a rate needs a positive limit, period and burst (got {limit}, {period_ns} ns, \
                 {capacity})"
            )));
        }
        Ok(Self {
            limit,
            period_ns,
            capacity,
        })
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub(super) fn scaled(&self, now_ns: u64) -> u128 {
        u128::from(now_ns) * u128::from(self.limit)
    }

    pub(super) fn cost(&self, units: u64) -> u128 {
        u128::from(units) * u128::from(self.period_ns)
    }

    pub(super) fn tolerance(&self) -> u128 {
        self.cost(self.capacity)
    }

    /// The TAT after charging `units`, or how long (ns) until they would fit.
    pub(super) fn charge(&self, tat: u128, now_ns: u64, units: u64) -> Result<u128, u64> {
        let now = self.scaled(now_ns);
        let new_tat = tat.max(now) + self.cost(units);
        let wait = (new_tat - now).saturating_sub(self.tolerance());
        if wait == 0 {
            Ok(new_tat)
        } else {
            Err(self.scaled_to_ns(wait))
        }
    }

    pub(super) fn snapshot(&self, tat: u128, now_ns: u64) -> Snapshot {
        let now = self.scaled(now_ns);
        let backlog = tat.saturating_sub(now);
        let free = self.tolerance().saturating_sub(backlog) / u128::from(self.period_ns);
        Snapshot {
            limit: self.limit,
            remaining: u64::try_from(free).unwrap_or(u64::MAX),
            reset_ns: self.scaled_to_ns(backlog),
        }
    }

    /// Scaled time to nanoseconds, rounded up (a wait is never reported short).
    pub(super) fn scaled_to_ns(&self, scaled: u128) -> u64 {
        u64::try_from(scaled.div_ceil(u128::from(self.limit))).unwrap_or(u64::MAX)
    }
}
