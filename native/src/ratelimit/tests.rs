use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use proptest::prelude::*;

use super::*;

const SECOND: u64 = 1_000_000_000;
const MINUTE: u64 = 60 * SECOND;

fn plan(rpm: u64, tpm: u64, concurrent: Option<u32>) -> Policy {
    Policy {
        requests: Some(Rate::new(rpm, MINUTE, None).unwrap()),
        tokens: Some(Rate::new(tpm, MINUTE, None).unwrap()),
        max_concurrent: concurrent,
    }
}

#[test]
fn admits_a_full_bucket_then_waits_one_interval() {
    let limiter = Limiter::new(100);
    let policy = plan(60, 1_000_000, None);
    let t = 5 * MINUTE;
    for i in 0..60 {
        let decision = limiter.acquire("acme", &policy, 1, t);
        assert!(decision.allowed(), "request {i}");
        assert_eq!(decision.requests.unwrap().remaining, 59 - i);
    }
    let denied = limiter.acquire("acme", &policy, 1, t);
    assert_eq!(denied.denied_by, Some(Which::Requests));
    assert_eq!(denied.retry_after_ns, SECOND);
    assert_eq!(denied.requests.unwrap().reset_ns, MINUTE);
    assert!(limiter.acquire("acme", &policy, 1, t + SECOND).allowed());
    assert!(limiter.acquire("other", &policy, 1, t).allowed());
}

#[test]
fn a_denial_charges_no_limit() {
    let limiter = Limiter::new(100);
    let policy = plan(10, 100, Some(5));
    assert!(limiter.acquire("k", &policy, 90, 0).allowed());
    let before = limiter.peek("k", &policy, 0);
    let denied = limiter.acquire("k", &policy, 20, 0);
    assert_eq!(denied.denied_by, Some(Which::Tokens));
    assert_eq!(denied.retry_after_ns, 10 * MINUTE / 100);
    assert_eq!(limiter.peek("k", &policy, 0), before);
    assert_eq!(before.requests.unwrap().remaining, 9);
    assert_eq!(before.in_flight, 1);
}

#[test]
fn more_tokens_than_the_bucket_holds_is_too_large() {
    let limiter = Limiter::new(100);
    let denied = limiter.acquire("k", &plan(10, 100, None), 101, 0);
    assert!(denied.too_large && denied.denied_by == Some(Which::Tokens));
}

#[test]
fn concurrency_is_held_until_release() {
    let limiter = Limiter::new(100);
    let policy = plan(1000, 1_000_000, Some(2));
    assert!(limiter.acquire("k", &policy, 10, 0).allowed());
    assert!(limiter.acquire("k", &policy, 10, 0).allowed());
    let denied = limiter.acquire("k", &policy, 10, 0);
    assert_eq!(denied.denied_by, Some(Which::Concurrency));
    limiter.release("k", &policy, 10, 10, 0);
    assert_eq!(limiter.acquire("k", &policy, 10, 0).in_flight, 2);
}

#[test]
fn true_up_refunds_or_charges_the_difference() {
    let limiter = Limiter::new(100);
    let policy = plan(1000, 1000, None);
    assert!(limiter.acquire("k", &policy, 800, 0).allowed());
    limiter.true_up("k", &policy, 800, 100, 0);
    assert_eq!(limiter.peek("k", &policy, 0).tokens.unwrap().remaining, 900);
    limiter.release("k", &policy, 100, 1500, 0);
    let state = limiter.peek("k", &policy, 0).tokens.unwrap();
    assert_eq!(state.remaining, 0);
    assert_eq!(state.reset_ns, MINUTE * 1500 / 1000);
    let denied = limiter.acquire("k", &policy, 1, 0);
    assert_eq!(denied.retry_after_ns, MINUTE / 2 + MINUTE / 1000);
}

#[test]
fn idle_keys_are_forgotten_and_the_table_is_bounded() {
    let limiter = Limiter::new(SHARDS * 4);
    let policy = plan(60, 1000, None);
    for i in 0..10_000 {
        // Each key is idle a second after its request, long before the next round.
        limiter.acquire(&format!("k{i}"), &plan(1, 1000, None), 1, i * MINUTE);
    }
    assert!(limiter.len() <= SHARDS * 4);
    let full = Limiter::new(1);
    assert!(full.acquire("a", &policy, 1, 0).allowed());
    let busy: Vec<_> = (0..200)
        .map(|i| full.acquire(&format!("b{i}"), &policy, 1, 0))
        .collect();
    assert!(busy.iter().any(|d| d.denied_by == Some(Which::Capacity)));
    assert!(full.len() <= SHARDS);
}

#[test]
fn rates_must_be_positive() {
    assert!(Rate::new(0, MINUTE, None).is_err());
    assert!(Rate::new(10, 0, None).is_err());
    assert!(Rate::new(10, MINUTE, Some(0)).is_err());
}

#[test]
fn concurrent_acquires_never_exceed_the_bucket() {
    let limiter = Arc::new(Limiter::new(1000));
    let policy = plan(500, 1_000_000, None);
    let admitted = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (limiter, admitted) = (Arc::clone(&limiter), Arc::clone(&admitted));
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    if limiter.acquire("shared", &policy, 1, 42).allowed() {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(admitted.load(Ordering::Relaxed), 500);
}

proptest! {
    /// GCRA's guarantee: in any window of length `w`, at most `capacity + w·rate` units pass.
    #[test]
    fn never_over_admits(
        limit in 1u64..50,
        burst in prop::option::of(1u64..50),
        steps in prop::collection::vec((0u64..3 * SECOND, 0u64..20, any::<bool>()), 1..200),
    ) {
        let period = 10 * SECOND;
        let rate = Rate::new(limit, period, burst).unwrap();
        let policy = Policy { requests: None, tokens: Some(rate), max_concurrent: Some(3) };
        let limiter = Limiter::new(10);
        let (mut now, mut admitted, mut in_flight) = (0u64, Vec::new(), 0u32);
        for (advance, cost, finish) in steps {
            now += advance;
            if finish && in_flight > 0 {
                limiter.release("k", &policy, 0, 0, now);
                in_flight -= 1;
            }
            let decision = limiter.acquire("k", &policy, cost, now);
            prop_assert!(decision.in_flight <= 3);
            if decision.allowed() {
                in_flight += 1;
                admitted.push((now, cost));
            }
        }
        let capacity = u128::from(rate.capacity());
        for (i, &(start, _)) in admitted.iter().enumerate() {
            let mut total = 0u128;
            for &(at, cost) in &admitted[i..] {
                total += u128::from(cost);
                let allowance = capacity + u128::from(at - start) * u128::from(limit) / u128::from(period);
                prop_assert!(total <= allowance, "{total} > {allowance} within {} ns", at - start);
            }
        }
    }

    /// With time standing still, exactly `capacity` units pass, whatever the mix of costs.
    #[test]
    fn a_still_clock_admits_exactly_the_capacity(costs in prop::collection::vec(1u64..5, 1..100)) {
        let rate = Rate::new(20, MINUTE, None).unwrap();
        let policy = Policy { tokens: Some(rate), ..Policy::default() };
        let limiter = Limiter::new(10);
        let mut total = 0;
        for cost in costs {
            if limiter.acquire("k", &policy, cost, 7).allowed() {
                total += cost;
            }
        }
        prop_assert!(total <= 20);
        prop_assert_eq!(limiter.peek("k", &policy, 7).tokens.unwrap().remaining, 20 - total);
    }
}

fn ask<'a>(key: &'a str, policy: &'a Policy, tokens: u64) -> Ask<'a> {
    Ask {
        key,
        policy,
        tokens,
    }
}

#[test]
fn acquire_all_charges_every_key_or_none() {
    let limiter = Limiter::new(100);
    let tenant = plan(100, 10_000, Some(10));
    let model = plan(2, 1_000, None);
    let asks = [ask("acme", &tenant, 400), ask("acme/gpt", &model, 400)];
    for _ in 0..2 {
        let outcome = limiter.acquire_all(&asks, 0);
        assert_eq!(outcome.refused, None);
        assert!(outcome.decisions.iter().all(Decision::allowed));
    }
    let before = limiter.peek("acme", &tenant, 0);
    let refused = limiter.acquire_all(&asks, 0);
    assert_eq!(refused.refused, Some(1));
    assert_eq!(refused.decisions.len(), 2);
    assert_eq!(refused.decisions[1].denied_by, Some(Which::Requests));
    assert_eq!(limiter.peek("acme", &tenant, 0), before);
    assert_eq!(before.in_flight, 2);
}

#[test]
fn acquire_all_adds_up_asks_for_one_key() {
    let limiter = Limiter::new(100);
    let policy = plan(100, 1_000, None);
    let outcome = limiter.acquire_all(&[ask("k", &policy, 600), ask("k", &policy, 600)], 0);
    assert_eq!(outcome.refused, Some(1));
    assert_eq!(
        limiter.peek("k", &policy, 0).tokens.unwrap().remaining,
        1_000
    );
    let outcome = limiter.acquire_all(&[ask("k", &policy, 300), ask("k", &policy, 300)], 0);
    assert_eq!(outcome.refused, None);
    assert_eq!(outcome.decisions[1].tokens.unwrap().remaining, 400);
    assert_eq!(limiter.peek("k", &policy, 0).tokens.unwrap().remaining, 400);
}

#[test]
fn concurrent_acquire_all_never_exceeds_any_key() {
    let limiter = Arc::new(Limiter::new(1000));
    let shared = plan(300, 1_000_000, None);
    let admitted = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let (limiter, admitted) = (Arc::clone(&limiter), Arc::clone(&admitted));
            std::thread::spawn(move || {
                let own = format!("own-{t}");
                for _ in 0..400 {
                    // Alternate the order so lock ordering, not ask order, prevents deadlock.
                    let asks = if t % 2 == 0 {
                        [ask("shared", &shared, 1), ask(&own, &shared, 1)]
                    } else {
                        [ask(&own, &shared, 1), ask("shared", &shared, 1)]
                    };
                    if limiter.acquire_all(&asks, 9).refused.is_none() {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(admitted.load(Ordering::Relaxed), 300);
    assert_eq!(
        limiter
            .peek("shared", &shared, 9)
            .requests
            .unwrap()
            .remaining,
        0
    );
}

#[test]
fn a_key_whose_limit_changes_keeps_what_it_used() {
    // A tenant whose plan grows from 100 to 1000 requests a minute (a reload, or a token
    // with another plan claim) and back: what it used counts as so many requests under each.
    let limiter = Limiter::new(100);
    let (starter, pro) = (plan(100, 1_000_000, None), plan(1000, 1_000_000, None));
    let t = 5 * MINUTE;
    for _ in 0..3 {
        assert!(limiter.acquire("acme", &starter, 1, t).allowed());
    }
    let upgraded = limiter.acquire("acme", &pro, 1, t);
    assert_eq!(upgraded.requests.unwrap().remaining, 1000 - 4);
    let back = limiter.acquire("acme", &starter, 1, t);
    assert_eq!(back.requests.unwrap().remaining, 100 - 5);
    let peeked = limiter.peek("acme", &starter, t).requests.unwrap();
    assert_eq!(peeked.remaining, 95);
    let mut admitted = 0;
    while limiter.acquire("acme", &starter, 1, t).allowed() {
        admitted += 1;
    }
    assert_eq!(admitted, 95);
    // The 100 a starter may use are 100 of a pro's 1000.
    let upgraded_again = limiter.acquire("acme", &pro, 1, t);
    assert_eq!(upgraded_again.requests.unwrap().remaining, 1000 - 101);
}
