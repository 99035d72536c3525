//! Rate-limit accounting: a table of GCRA states keyed by string, with atomic multi-limit
//! acquire (requests, tokens and concurrency all pass or nothing is charged), release with a
//! true-up of the token charge, and the `remaining` / `reset` / `retry_after` figures OpenAI's
//! `x-ratelimit-*` headers carry.
//!
//! GCRA keeps one number per limit, the theoretical arrival time (TAT): a request of cost `c`
//! at time `t` is admitted iff `max(TAT, t) + c·T - t <= capacity·T`, where `T = period/limit`
//! is the time one unit "costs". Times are integers scaled by `limit` (`t·limit`, with
//! `T·limit = period`), so no rounding ever admits more than the limit.
//!
//! Time is passed in (nanoseconds on any monotonic clock), so the table is deterministic and
//! testable. The table is sharded; each shard is a mutex-guarded hash map, so an acquire is
//! O(1) and contends only with keys of the same shard. An entry that is fully replenished and
//! has nothing in flight is indistinguishable from a missing one, so sweeps drop such idle
//! entries without changing any decision; a shard sweeps when it has doubled since its last
//! sweep (amortised O(1)), and `max_keys` bounds memory outright.

use std::collections::HashMap;

use parking_lot::Mutex;
use xxhash_rust::xxh3::{xxh3_64, Xxh3DefaultBuilder};

pub mod gate;
pub mod ledger;
mod rate;
pub mod shape;

pub use rate::Rate;

const SHARDS: usize = 32;
const MIN_SWEEP: usize = 64;

/// The limits of one plan. A `None` limit is not enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Policy {
    pub requests: Option<Rate>,
    pub tokens: Option<Rate>,
    pub max_concurrent: Option<u32>,
}

/// One limit's state as the headers report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub limit: u64,
    pub remaining: u64,
    /// Time until the limit is back to full.
    pub reset_ns: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Requests,
    Tokens,
    Concurrency,
    /// The table is full and the key is new (fail closed rather than forget usage).
    Capacity,
}

impl Which {
    pub fn name(self) -> &'static str {
        match self {
            Which::Requests => "requests",
            Which::Tokens => "tokens",
            Which::Concurrency => "concurrency",
            Which::Capacity => "capacity",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// `None` when admitted; otherwise the limit that made the caller wait longest.
    pub denied_by: Option<Which>,
    /// The request costs more tokens than the bucket holds: waiting will not help.
    pub too_large: bool,
    /// How long until a retry would pass the rate limits (0 for concurrency or capacity).
    pub retry_after_ns: u64,
    pub requests: Option<Snapshot>,
    pub tokens: Option<Snapshot>,
    /// Requests in flight for the key, this one included when admitted.
    pub in_flight: u32,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        self.denied_by.is_none()
    }
}

/// One key's part of [`Limiter::acquire_all`].
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub key: &'a str,
    pub policy: &'a Policy,
    pub tokens: u64,
}

/// The outcome of [`Limiter::acquire_all`]: one decision per ask up to the first refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllDecision {
    /// The index of the ask that was refused; `None` when all were admitted and charged.
    pub refused: Option<usize>,
    /// Per ask, in order; before a refusal they show what would have been admitted.
    pub decisions: Vec<Decision>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    requests_tat: u128,
    tokens_tat: u128,
    /// The limits the two TATs are scaled by (0 before any charge).
    requests_scale: u64,
    tokens_scale: u64,
    in_flight: u32,
    /// When every limit is back to full (ns); with nothing in flight, the entry is idle then.
    idle_at_ns: u64,
}

impl Entry {
    /// The entry with its TATs scaled by `policy`'s limits. A key's limits change when its
    /// plan does (a reload, a token's plan claim): read in the old scale, a TAT would stand
    /// for ten times the backlog after a limit grew tenfold. Rescaled, what was used carries
    /// over as so many requests and tokens, as the Redis backend keeps it.
    fn in_scale_of(mut self, policy: &Policy, now_ns: u64) -> Self {
        if let Some(rate) = policy.requests {
            let tat = self.requests_tat;
            self.requests_tat = rescaled(tat, self.requests_scale, rate.limit(), now_ns);
            self.requests_scale = rate.limit();
        }
        if let Some(rate) = policy.tokens {
            let tat = self.tokens_tat;
            self.tokens_tat = rescaled(tat, self.tokens_scale, rate.limit(), now_ns);
            self.tokens_scale = rate.limit();
        }
        self
    }

    fn is_idle(&self, now_ns: u64) -> bool {
        self.in_flight == 0 && self.idle_at_ns <= now_ns
    }

    fn touch(&mut self, policy: &Policy) {
        let full = |rate: Option<Rate>, tat: u128| rate.map_or(0, |r| r.scaled_to_ns(tat));
        let requests = full(policy.requests, self.requests_tat);
        self.idle_at_ns = requests.max(full(policy.tokens, self.tokens_tat));
    }
}

/// `tat`, scaled by `from`, scaled by `to` instead (`from` 0: nothing charged yet). The
/// backlog past now is units times the period whatever the limit, so it carries over as is.
fn rescaled(tat: u128, from: u64, to: u64, now_ns: u64) -> u128 {
    if from == to || from == 0 {
        return tat;
    }
    let now = u128::from(now_ns);
    let backlog = tat.saturating_sub(now * u128::from(from));
    now * u128::from(to) + backlog
}

type Shard = HashMap<Box<str>, Entry, Xxh3DefaultBuilder>;

/// `entry` for `key`, written in place when the key is known: an `insert` would allocate the
/// key again on every request only to drop it.
fn store(map: &mut Shard, key: &str, entry: Entry) {
    match map.get_mut(key) {
        Some(slot) => *slot = entry,
        None => {
            map.insert(key.into(), entry);
        }
    }
}

struct ShardState {
    map: Shard,
    sweep_at: usize,
}

/// The limiter table; share it between threads (all methods take `&self`).
pub struct Limiter {
    shards: [Mutex<ShardState>; SHARDS],
    max_keys_per_shard: usize,
}

impl Limiter {
    /// A table that holds at most about `max_keys` keys with usage to remember.
    pub fn new(max_keys: usize) -> Self {
        let shards = std::array::from_fn(|_| {
            Mutex::new(ShardState {
                map: Shard::with_hasher(Xxh3DefaultBuilder),
                sweep_at: MIN_SWEEP,
            })
        });
        Self {
            shards,
            max_keys_per_shard: max_keys.div_ceil(SHARDS).max(1),
        }
    }

    fn shard(&self, key: &str) -> &Mutex<ShardState> {
        // The remainder is below SHARDS, the array's length.
        &self.shards[(xxh3_64(key.as_bytes()) % SHARDS as u64) as usize]
    }

    /// Admit a request costing `tokens` for `key` iff every limit of `policy` allows it; a
    /// denied request charges nothing.
    pub fn acquire(&self, key: &str, policy: &Policy, tokens: u64, now_ns: u64) -> Decision {
        let mut shard = self.shard(key).lock();
        if !self.make_room(&mut shard, key, now_ns) {
            return denied(Which::Capacity, false, 0, &Entry::default(), policy, now_ns);
        }
        let entry = shard.map.get(key).copied().unwrap_or_default();
        let entry = entry.in_scale_of(policy, now_ns);
        match decide(&entry, policy, tokens, now_ns) {
            Ok(next) => {
                store(&mut shard.map, key, next);
                admitted(&next, policy, now_ns)
            }
            Err((which, too_large, wait)) => denied(which, too_large, wait, &entry, policy, now_ns),
        }
    }

    /// [`Limiter::acquire`] for several keys at once (e.g. a tenant and the tenant on one
    /// model), all or nothing: nothing is charged anywhere unless every ask is admitted.
    /// Asks for the same key add up, in order.
    pub fn acquire_all(&self, asks: &[Ask<'_>], now_ns: u64) -> AllDecision {
        let shard_of = |ask: &Ask<'_>| (xxh3_64(ask.key.as_bytes()) % SHARDS as u64) as usize;
        let mut order: Vec<usize> = asks.iter().map(shard_of).collect();
        order.sort_unstable();
        order.dedup();
        // Shards are locked in ascending order, so concurrent calls cannot deadlock.
        let mut guards: Vec<_> = order.iter().map(|&i| (i, self.shards[i].lock())).collect();
        let mut pending: Vec<(usize, &str, Entry)> = Vec::with_capacity(asks.len());
        let mut decisions = Vec::with_capacity(asks.len());
        for (index, ask) in asks.iter().enumerate() {
            let shard = shard_of(ask);
            let Some((_, guard)) = guards.iter_mut().find(|(i, _)| *i == shard) else {
                continue;
            };
            let earlier = pending.iter().rev().find(|(_, key, _)| *key == ask.key);
            let entry = match earlier {
                Some(&(_, _, entry)) => entry.in_scale_of(ask.policy, now_ns),
                None if self.make_room(guard, ask.key, now_ns) => {
                    let stored = guard.map.get(ask.key).copied().unwrap_or_default();
                    stored.in_scale_of(ask.policy, now_ns)
                }
                None => {
                    let fresh = Entry::default();
                    decisions.push(denied(
                        Which::Capacity,
                        false,
                        0,
                        &fresh,
                        ask.policy,
                        now_ns,
                    ));
                    return AllDecision {
                        refused: Some(index),
                        decisions,
                    };
                }
            };
            match decide(&entry, ask.policy, ask.tokens, now_ns) {
                Ok(next) => {
                    decisions.push(admitted(&next, ask.policy, now_ns));
                    pending.push((shard, ask.key, next));
                }
                Err((which, large, wait)) => {
                    decisions.push(denied(which, large, wait, &entry, ask.policy, now_ns));
                    return AllDecision {
                        refused: Some(index),
                        decisions,
                    };
                }
            }
        }
        for (shard, key, entry) in pending {
            if let Some((_, guard)) = guards.iter_mut().find(|(i, _)| *i == shard) {
                store(&mut guard.map, key, entry);
            }
        }
        AllDecision {
            refused: None,
            decisions,
        }
    }

    /// Whether `key` has (or may take) a slot in `shard`, sweeping idle entries when due.
    fn make_room(&self, shard: &mut ShardState, key: &str, now_ns: u64) -> bool {
        if shard.map.contains_key(key) {
            return true;
        }
        let len = shard.map.len();
        if len >= shard.sweep_at || len >= self.max_keys_per_shard {
            shard.map.retain(|_, entry| !entry.is_idle(now_ns));
            shard.sweep_at = (shard.map.len() * 2).max(MIN_SWEEP);
        }
        shard.map.len() < self.max_keys_per_shard
    }

    /// End a request admitted by [`Limiter::acquire`]: free its concurrency slot and true up
    /// its token charge from `reserved` to `used` (a refund when it used less, a debt that
    /// delays later requests when it used more).
    pub fn release(&self, key: &str, policy: &Policy, reserved: u64, used: u64, now_ns: u64) {
        self.settle(key, policy, reserved, used, true, now_ns);
    }

    /// True up a token charge without touching concurrency (e.g. when usage arrives late).
    pub fn true_up(&self, key: &str, policy: &Policy, reserved: u64, used: u64, now_ns: u64) {
        self.settle(key, policy, reserved, used, false, now_ns);
    }

    fn settle(&self, key: &str, policy: &Policy, reserved: u64, used: u64, slot: bool, now: u64) {
        let mut shard = self.shard(key).lock();
        if !shard.map.contains_key(key) {
            // Fully replenished and swept: only an extra charge has anything to record.
            if used <= reserved || policy.tokens.is_none() {
                return;
            }
            shard.map.insert(key.into(), Entry::default());
        }
        let Some(entry) = shard.map.get_mut(key) else {
            return;
        };
        *entry = entry.in_scale_of(policy, now);
        if slot && policy.max_concurrent.is_some() {
            entry.in_flight = entry.in_flight.saturating_sub(1);
        }
        if let Some(rate) = policy.tokens {
            if used >= reserved {
                let base = entry.tokens_tat.max(rate.scaled(now));
                entry.tokens_tat = base + rate.cost(used - reserved);
            } else {
                entry.tokens_tat = entry.tokens_tat.saturating_sub(rate.cost(reserved - used));
            }
        }
        entry.touch(policy);
    }

    /// The current state of `key` under `policy`, charging nothing (for headers on requests
    /// that never reached the limiter, and for tests).
    pub fn peek(&self, key: &str, policy: &Policy, now_ns: u64) -> Decision {
        let shard = self.shard(key).lock();
        let entry = shard.map.get(key).copied().unwrap_or_default();
        admitted(&entry.in_scale_of(policy, now_ns), policy, now_ns)
    }

    /// Keys currently remembered (idle ones may linger until their shard's next sweep).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.lock().map.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

type Denial = (Which, bool, u64);

/// The entry after admitting the request, or why not. Checks every limit before charging any.
fn decide(entry: &Entry, policy: &Policy, tokens: u64, now_ns: u64) -> Result<Entry, Denial> {
    let mut next = *entry;
    let mut denial: Option<Denial> = None;
    let mut deny = |which: Which, too_large: bool, wait: u64| {
        let longer = denial.is_none_or(|(_, large, w)| !large && (too_large || wait > w));
        if longer {
            denial = Some((which, too_large, wait));
        }
    };
    if let Some(rate) = policy.requests {
        match rate.charge(entry.requests_tat, now_ns, 1) {
            Ok(tat) => next.requests_tat = tat,
            Err(wait) => deny(Which::Requests, false, wait),
        }
    }
    if let Some(rate) = policy.tokens {
        if tokens > rate.capacity() {
            deny(Which::Tokens, true, 0);
        } else {
            match rate.charge(entry.tokens_tat, now_ns, tokens) {
                Ok(tat) => next.tokens_tat = tat,
                Err(wait) => deny(Which::Tokens, false, wait),
            }
        }
    }
    if let Some(max) = policy.max_concurrent {
        if entry.in_flight >= max {
            deny(Which::Concurrency, false, 0);
        } else {
            next.in_flight += 1;
        }
    }
    match denial {
        Some(denial) => Err(denial),
        None => {
            next.touch(policy);
            Ok(next)
        }
    }
}

fn admitted(entry: &Entry, policy: &Policy, now_ns: u64) -> Decision {
    Decision {
        denied_by: None,
        too_large: false,
        retry_after_ns: 0,
        requests: policy
            .requests
            .map(|r| r.snapshot(entry.requests_tat, now_ns)),
        tokens: policy.tokens.map(|r| r.snapshot(entry.tokens_tat, now_ns)),
        in_flight: entry.in_flight,
    }
}

fn denied(
    which: Which,
    too_large: bool,
    retry_after_ns: u64,
    entry: &Entry,
    policy: &Policy,
    now_ns: u64,
) -> Decision {
    Decision {
        denied_by: Some(which),
        too_large,
        retry_after_ns,
        ..admitted(entry, policy, now_ns)
    }
}

#[cfg(test)]
mod tests;
