//! A plan's limits on one model, laid out once and then charged per request in one call.
//!
//! A plan puts the same keys on every request for a model — the tenant, and the tenant on that
//! model when the plan limits the model — and OpenAI's `x-ratelimit-*` headers always come
//! from the same answers of the table: the tightest requests limit and the tightest tokens
//! limit. A [`Shape`] keeps that layout, so admitting a request is one pass that builds the
//! keys, charges them all or nothing ([`Limiter::acquire_all`]) and writes the headers.

use super::{Ask, Decision, Limiter, Policy};
use crate::header_rules::line_pairs;
use crate::utc_text::write_digits;

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
    /// Every scope admitted and charged; the `x-ratelimit-*` headers to answer with, as
    /// `name: value\r\n` lines.
    Admitted(Vec<u8>),
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
            None => Admission::Admitted(self.header_lines(&outcome.decisions)),
        }
    }

    /// The tightest requests and tokens limits among the scopes' answers, as header lines
    /// (written straight into one buffer: this runs on every admitted request).
    pub fn header_lines(&self, decisions: &[Decision]) -> Vec<u8> {
        let mut lines = Vec::with_capacity(100 * self.headers.len());
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
                push_line(&mut lines, limit_name, |out| push_number(out, limit));
                push_line(&mut lines, remaining_name, |out| push_number(out, remaining));
                push_line(&mut lines, reset_name, |out| {
                    write_duration(out, reset_ns / 1_000_000);
                });
            }
        }
        lines
    }

    /// End an admitted request: free its slots and true up its reservation to `used` tokens.
    pub fn settle(&self, limiter: &Limiter, tenant: &str, reserved: u64, used: u64, now_ns: u64) {
        for (scope, key) in self.scopes.iter().zip(self.keys(tenant)) {
            limiter.release(&key, &scope.policy, reserved, used, now_ns);
        }
    }
}

/// `(name, value)` of each `name: value\r\n` line [`Shape::header_lines`] wrote.
pub fn header_pairs(lines: &[u8]) -> Vec<(&str, &str)> {
    line_pairs(lines)
        .filter_map(|(name, value)| {
            Some((std::str::from_utf8(name).ok()?, std::str::from_utf8(value).ok()?))
        })
        .collect()
}

fn push_line(out: &mut Vec<u8>, name: &str, value: impl FnOnce(&mut Vec<u8>)) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    value(out);
    out.extend_from_slice(b"\r\n");
}

fn push_number(out: &mut Vec<u8>, number: u64) {
    write_digits(out, number, 1);
}

/// A wait as OpenAI writes it: `12ms` under a second, else `1.5s`, `6m0s`, `1h2m3s`.
pub fn write_duration(out: &mut Vec<u8>, ms: u64) {
    if ms < 1000 {
        push_number(out, ms);
        out.extend_from_slice(b"ms");
        return;
    }
    let (hours, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    if hours > 0 {
        push_number(out, hours);
        out.push(b'h');
    }
    if hours > 0 || minutes > 0 {
        push_number(out, minutes);
        out.push(b'm');
    }
    push_number(out, rest / 1000);
    let millis = rest % 1000;
    if millis > 0 {
        // Three digits (`1.001s`), less the trailing zeros (`1.5s`).
        out.push(b'.');
        write_digits(out, millis, 3);
        while out.last() == Some(&b'0') {
            out.pop();
        }
    }
    out.push(b's');
}

#[cfg(test)]
mod tests;
