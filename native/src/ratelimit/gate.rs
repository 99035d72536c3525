//! One request's whole admission on the in-process state: the ledger (block list, daily
//! budget), then every limit of its plan's shape, all or nothing; and its settlement.

use super::ledger::{Barred, Ledgers, Spent};
use super::shape::{Admission, Shape};
use super::{Decision, Limiter};

/// The outcome of [`admit`].
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Charged everywhere; the `x-ratelimit-*` header lines to answer with.
    Admitted(Vec<u8>),
    /// Nothing charged: the scope that refused and its decision.
    Refused(usize, Decision),
    /// Refused by the ledger before any limit was looked at.
    Barred(Barred),
}

/// Check the ledger, then charge one request and `reserve` tokens on every scope of `shape`.
#[allow(clippy::too_many_arguments)] // the request's figures, each one number
pub fn admit(
    limiter: &Limiter,
    ledgers: &Ledgers,
    shape: &Shape,
    tenant: &str,
    reserve: u64,
    budget: Option<f64>,
    now_ns: u64,
    day: u64,
) -> Verdict {
    if let Some(barred) = ledgers.bar(tenant, day, budget) {
        return Verdict::Barred(barred);
    }
    match shape.admit(limiter, tenant, reserve, now_ns) {
        Admission::Admitted(headers) => {
            ledgers.reserve(tenant, day, reserve);
            Verdict::Admitted(headers)
        }
        Admission::Refused(index, decision) => Verdict::Refused(index, decision),
    }
}

/// End a request [`admit`] admitted: free its slots, true up its reservation to `used`
/// tokens and add its cost to the tenant's day.
#[allow(clippy::too_many_arguments)]
pub fn settle(
    limiter: &Limiter,
    ledgers: &Ledgers,
    shape: &Shape,
    tenant: &str,
    reserved: u64,
    used: u64,
    cost_usd: f64,
    now_ns: u64,
    day: u64,
) -> Spent {
    shape.settle(limiter, tenant, reserved, used, now_ns);
    let delta = i64::try_from(used)
        .unwrap_or(i64::MAX)
        .saturating_sub(i64::try_from(reserved).unwrap_or(i64::MAX));
    ledgers.spend(tenant, day, delta, cost_usd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::shape::{HeaderBucket, HeaderKind, Scope};
    use crate::ratelimit::{Policy, Rate, Which};

    const MINUTE_NS: u64 = 60_000_000_000;

    fn one_request_a_minute() -> Shape {
        let policy = Policy {
            requests: Some(Rate::new(1, MINUTE_NS, None).unwrap()),
            tokens: Some(Rate::new(1000, MINUTE_NS, None).unwrap()),
            max_concurrent: None,
        };
        Shape {
            scopes: vec![Scope {
                suffix: String::new(),
                policy,
                reserves_tokens: true,
            }],
            headers: vec![HeaderKind {
                tokens: false,
                buckets: vec![HeaderBucket {
                    scope: 0,
                    tokens: false,
                    per_minute: 1,
                }],
            }],
        }
    }

    #[test]
    fn admitted_requests_reserve_and_settle_on_the_ledger() {
        let (limiter, ledgers, shape) = (Limiter::new(100), Ledgers::new(), one_request_a_minute());
        let verdict = admit(&limiter, &ledgers, &shape, "acme", 300, Some(1.0), 0, 7);
        let Verdict::Admitted(lines) = verdict else {
            panic!("refused: {verdict:?}");
        };
        assert!(lines.starts_with(b"x-ratelimit-limit-requests: 1\r\n"));
        assert_eq!(ledgers.day_of("acme", 7).tokens, 300);
        let spent = settle(&limiter, &ledgers, &shape, "acme", 300, 120, 0.4, 1, 7);
        assert_eq!(spent, Spent { before: 0.0, after: 0.4 });
        assert_eq!(ledgers.day_of("acme", 7).tokens, 120);
    }

    #[test]
    fn a_refusal_charges_neither_the_limits_nor_the_ledger() {
        let (limiter, ledgers, shape) = (Limiter::new(100), Ledgers::new(), one_request_a_minute());
        assert!(matches!(
            admit(&limiter, &ledgers, &shape, "acme", 10, None, 0, 7),
            Verdict::Admitted(_)
        ));
        let Verdict::Refused(0, decision) = admit(&limiter, &ledgers, &shape, "acme", 10, None, 1, 7)
        else {
            panic!("a second request in the minute was admitted");
        };
        assert_eq!(decision.denied_by, Some(Which::Requests));
        assert_eq!(ledgers.day_of("acme", 7).tokens, 10);
    }

    #[test]
    fn the_ledger_refuses_before_the_limits_are_charged() {
        let (limiter, ledgers, shape) = (Limiter::new(100), Ledgers::new(), one_request_a_minute());
        ledgers.spend("acme", 7, 0, 2.0);
        assert_eq!(
            admit(&limiter, &ledgers, &shape, "acme", 10, Some(2.0), 0, 7),
            Verdict::Barred(Barred::OverBudget { spent_usd: 2.0 })
        );
        // The request bucket was not charged: the next day's request passes.
        assert!(matches!(
            admit(&limiter, &ledgers, &shape, "acme", 10, Some(2.0), 0, 8),
            Verdict::Admitted(_)
        ));
    }
}
