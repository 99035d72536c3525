//! A plan's limits on one model, laid out once and then charged per request in one call.
//!
//! A plan puts the same keys on every request for a model — the tenant, and the tenant on that
//! model when the plan limits the model — and OpenAI's `x-ratelimit-*` headers always come
//! from the same answers of the table: the tightest requests limit and the tightest tokens
//! limit. A [`Shape`] keeps that layout, so admitting a request is one pass that builds the
//! keys, charges them all or nothing ([`Limiter::acquire_all`]) and writes the headers.

use std::fmt::Write;

use super::{Ask, Decision, Limiter, Policy};

/// One key a request charges: the tenant's name followed by `suffix`.
#[derive(Debug, Clone)]
pub struct Scope {
    /// Empty for the tenant itself; a separator and the model for the tenant on a model.
    pub suffix: String,
    pub policy: Policy,
    /// The scope has a tokens limit: it is charged the request's reservation.
    pub reserves_tokens: bool,
}

/// Which limit of which scope may speak for one kind of header, and the limit it states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderBucket {
    /// Position of the scope in [`Shape::scopes`].
    pub scope: usize,
    /// Its tokens limit (else its requests limit).
    pub tokens: bool,
    /// The per-minute limit the `x-ratelimit-limit-*` header states.
    pub per_minute: u64,
}

/// The headers of one kind (requests or tokens): the tightest of `buckets` speaks.
#[derive(Debug, Clone)]
pub struct HeaderKind {
    pub tokens: bool,
    pub buckets: Vec<HeaderBucket>,
}

#[derive(Debug, Clone, Default)]
pub struct Shape {
    pub scopes: Vec<Scope>,
    pub headers: Vec<HeaderKind>,
}

/// The outcome of [`Shape::admit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Every scope admitted and charged; the `x-ratelimit-*` headers to answer with.
    Admitted(Vec<(&'static str, String)>),
    /// Nothing charged: the position of the scope that refused, and its decision.
    Refused(usize, Decision),
}

const REQUESTS_NAMES: [&str; 3] = [
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
];
const TOKENS_NAMES: [&str; 3] = [
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
];

impl Shape {
    fn keys(&self, tenant: &str) -> Vec<String> {
        self.scopes
            .iter()
            .map(|scope| {
                let mut key = String::with_capacity(tenant.len() + scope.suffix.len());
                key.push_str(tenant);
                key.push_str(&scope.suffix);
                key
            })
            .collect()
    }

    /// Charge one request and `reserve` tokens on every scope, or nothing.
    pub fn admit(&self, limiter: &Limiter, tenant: &str, reserve: u64, now_ns: u64) -> Admission {
        let keys = self.keys(tenant);
        let asks: Vec<Ask<'_>> = self
            .scopes
            .iter()
            .zip(&keys)
            .map(|(scope, key)| Ask {
                key,
                policy: &scope.policy,
                tokens: if scope.reserves_tokens { reserve } else { 0 },
            })
            .collect();
        let mut outcome = limiter.acquire_all(&asks, now_ns);
        match outcome.refused {
            Some(index) => Admission::Refused(index, outcome.decisions.swap_remove(index)),
            None => Admission::Admitted(self.headers(&outcome.decisions)),
        }
    }

    /// The tightest requests and tokens limits among the scopes' answers.
    pub fn headers(&self, decisions: &[Decision]) -> Vec<(&'static str, String)> {
        let mut headers = Vec::with_capacity(3 * self.headers.len());
        for kind in &self.headers {
            let mut tightest: Option<(u64, u64, u64)> = None;
            for bucket in &kind.buckets {
                let Some(decision) = decisions.get(bucket.scope) else {
                    continue;
                };
                let snapshot = if bucket.tokens {
                    decision.tokens
                } else {
                    decision.requests
                };
                if let Some(snapshot) = snapshot {
                    if tightest.is_none_or(|(_, remaining, _)| snapshot.remaining < remaining) {
                        tightest = Some((bucket.per_minute, snapshot.remaining, snapshot.reset_ns));
                    }
                }
            }
            if let Some((limit, remaining, reset_ns)) = tightest {
                let [limit_name, remaining_name, reset_name] = if kind.tokens {
                    TOKENS_NAMES
                } else {
                    REQUESTS_NAMES
                };
                headers.push((limit_name, limit.to_string()));
                headers.push((remaining_name, remaining.to_string()));
                headers.push((reset_name, duration(reset_ns / 1_000_000)));
            }
        }
        headers
    }

    /// End an admitted request: free its slots and true up its reservation to `used` tokens.
    pub fn settle(&self, limiter: &Limiter, tenant: &str, reserved: u64, used: u64, now_ns: u64) {
        for (scope, key) in self.scopes.iter().zip(self.keys(tenant)) {
            limiter.release(&key, &scope.policy, reserved, used, now_ns);
        }
    }
}

/// A wait as OpenAI writes it: `12ms` under a second, else `1.5s`, `6m0s`, `1h2m3s`.
pub fn duration(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (hours, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    let mut text = String::with_capacity(16);
    // Writing into a String cannot fail.
    if hours > 0 {
        let _ = write!(text, "{hours}h");
    }
    if hours > 0 || minutes > 0 {
        let _ = write!(text, "{minutes}m");
    }
    let _ = write!(text, "{}", rest / 1000);
    let millis = rest % 1000;
    if millis > 0 {
        let fraction = format!("{millis:03}");
        let _ = write!(text, ".{}", fraction.trim_end_matches('0'));
    }
    text.push('s');
    text
}

#[cfg(test)]
mod tests;
