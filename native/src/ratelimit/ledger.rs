//! Tenants' daily spend and the operator's block list, kept beside the rate-limit table so an
//! admission checks them in the same call that charges the limits.
//!
//! A tenant's spend and tokens count for one UTC day (`day`: days since the epoch, passed in so
//! the ledger is deterministic) and start over at the first call of the next day; a block
//! stays until lifted. The ledger also remembers the last daily budget each tenant was admitted
//! under, so the budget gauge can be read at scrape time instead of written on every request.

use std::collections::HashMap;

use parking_lot::Mutex;
use xxhash_rust::xxh3::Xxh3DefaultBuilder;

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    day: u64,
    spent_usd: f64,
    tokens: i64,
    blocked: bool,
    budget_usd: Option<f64>,
}

impl Entry {
    fn on(&mut self, day: u64) -> &mut Self {
        if self.day != day {
            self.day = day;
            self.spent_usd = 0.0;
            self.tokens = 0;
        }
        self
    }
}

/// Why a tenant is refused before any limit is looked at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Barred {
    Blocked { spent_usd: f64 },
    OverBudget { spent_usd: f64 },
}

/// Today's spend around one charge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spent {
    pub before: f64,
    pub after: f64,
}

impl Spent {
    /// The charge took the spend from below `ratio` of `budget` to at or above it.
    pub fn crossed(&self, budget: f64, ratio: f64) -> bool {
        let line = budget * ratio;
        self.after > self.before && self.before < line && line <= self.after
    }
}

/// A tenant's ledger as the admin API reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TenantDay {
    pub blocked: bool,
    pub spent_usd: f64,
    pub tokens: i64,
}

#[derive(Debug, Default)]
pub struct Ledgers {
    tenants: Mutex<HashMap<Box<str>, Entry, Xxh3DefaultBuilder>>,
}

impl Ledgers {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, tenant: &str, day: u64, act: impl FnOnce(&mut Entry) -> R) -> R {
        let mut tenants = self.tenants.lock();
        if let Some(entry) = tenants.get_mut(tenant) {
            return act(entry.on(day));
        }
        let entry = tenants.entry(tenant.into()).or_insert(Entry {
            day,
            ..Entry::default()
        });
        act(entry)
    }

    /// Refuse a blocked tenant, or one whose spend today reached `budget`; otherwise None.
    /// The budget is remembered for [`Ledgers::budgets`].
    pub fn bar(&self, tenant: &str, day: u64, budget: Option<f64>) -> Option<Barred> {
        self.with(tenant, day, |entry| {
            if budget.is_some() {
                entry.budget_usd = budget;
            }
            let spent_usd = entry.spent_usd;
            if entry.blocked {
                Some(Barred::Blocked { spent_usd })
            } else if budget.is_some_and(|budget| spent_usd >= budget) {
                Some(Barred::OverBudget { spent_usd })
            } else {
                None
            }
        })
    }

    /// Count `tokens` reserved by an admitted request.
    pub fn reserve(&self, tenant: &str, day: u64, tokens: u64) {
        self.with(tenant, day, |entry| {
            entry.tokens = entry.tokens.saturating_add_unsigned(tokens);
        });
    }

    /// Add an answer's cost, and the difference between its tokens and its reservation.
    pub fn spend(&self, tenant: &str, day: u64, token_delta: i64, cost_usd: f64) -> Spent {
        self.with(tenant, day, |entry| {
            let before = entry.spent_usd;
            // A cost that is not a number would poison the day's spend for good.
            if cost_usd.is_finite() {
                entry.spent_usd += cost_usd;
            }
            entry.tokens = entry.tokens.saturating_add(token_delta);
            Spent {
                before,
                after: entry.spent_usd,
            }
        })
    }

    pub fn set_blocked(&self, tenant: &str, day: u64, blocked: bool) {
        self.with(tenant, day, |entry| entry.blocked = blocked);
    }

    pub fn day_of(&self, tenant: &str, day: u64) -> TenantDay {
        self.with(tenant, day, |entry| TenantDay {
            blocked: entry.blocked,
            spent_usd: entry.spent_usd,
            tokens: entry.tokens,
        })
    }

    /// Every tenant admitted under a daily budget: its name, that budget and today's spend.
    pub fn budgets(&self, day: u64) -> Vec<(String, f64, f64)> {
        let mut tenants = self.tenants.lock();
        tenants
            .iter_mut()
            .filter_map(|(name, entry)| {
                let budget = entry.budget_usd?;
                Some((name.to_string(), budget, entry.on(day).spent_usd))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_bars_the_tenant_once_spent_and_renews_the_next_day() {
        let ledgers = Ledgers::new();
        assert_eq!(ledgers.bar("acme", 10, Some(1.0)), None);
        let spent = ledgers.spend("acme", 10, 0, 1.0);
        assert_eq!(spent, Spent { before: 0.0, after: 1.0 });
        assert_eq!(
            ledgers.bar("acme", 10, Some(1.0)),
            Some(Barred::OverBudget { spent_usd: 1.0 })
        );
        assert_eq!(ledgers.bar("acme", 11, Some(1.0)), None);
        assert_eq!(ledgers.bar("other", 11, Some(1.0)), None);
    }

    #[test]
    fn a_block_outlives_the_day_until_lifted() {
        let ledgers = Ledgers::new();
        ledgers.set_blocked("acme", 10, true);
        assert_eq!(
            ledgers.bar("acme", 12, None),
            Some(Barred::Blocked { spent_usd: 0.0 })
        );
        ledgers.set_blocked("acme", 12, false);
        assert_eq!(ledgers.bar("acme", 12, None), None);
    }

    #[test]
    fn tokens_count_reservations_trued_up() {
        let ledgers = Ledgers::new();
        ledgers.reserve("acme", 10, 900);
        ledgers.spend("acme", 10, -200, 0.5);
        let day = ledgers.day_of("acme", 10);
        assert_eq!(day.tokens, 700);
        assert_eq!(day.spent_usd, 0.5);
        assert_eq!(ledgers.day_of("acme", 11).tokens, 0);
    }

    #[test]
    fn a_cost_that_is_not_a_number_is_not_added() {
        let ledgers = Ledgers::new();
        ledgers.spend("acme", 10, 0, 0.25);
        ledgers.spend("acme", 10, 0, f64::NAN);
        ledgers.spend("acme", 10, 0, f64::INFINITY);
        assert_eq!(ledgers.day_of("acme", 10).spent_usd, 0.25);
    }

    #[test]
    fn the_alert_line_is_crossed_once() {
        let charges = [0.5, 0.25, 0.05, 0.1, 0.2];
        let ledgers = Ledgers::new();
        let crossings = charges
            .iter()
            .filter(|cost| ledgers.spend("acme", 10, 0, **cost).crossed(1.0, 0.8))
            .count();
        assert_eq!(crossings, 1);
        assert!(!Spent { before: 0.9, after: 0.9 }.crossed(1.0, 0.8));
        assert!(Spent { before: 0.0, after: 0.8 }.crossed(1.0, 0.8));
    }

    #[test]
    fn budgets_lists_tenants_admitted_under_one_with_today_spend() {
        let ledgers = Ledgers::new();
        ledgers.bar("capped", 10, Some(5.0));
        ledgers.bar("free", 10, None);
        ledgers.spend("capped", 10, 0, 2.0);
        assert_eq!(ledgers.budgets(10), vec![("capped".to_string(), 5.0, 2.0)]);
        assert_eq!(ledgers.budgets(11), vec![("capped".to_string(), 5.0, 0.0)]);
    }
}
