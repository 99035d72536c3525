use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use pyo3::prelude::*;
use pyo3::intern;
use pyo3::IntoPyObjectExt;
use pyo3::types::{PyBytes, PyDict, PyString};

use super::errors::to_py;
use crate::ratelimit::gate::{self, Verdict};
use crate::ratelimit::ledger::{Barred, Ledgers};
use crate::ratelimit::shape::{header_pairs, HeaderBucket, HeaderKind, Scope, Shape};
use crate::ratelimit::{Ask, Decision, Limiter, Policy, Rate, Snapshot};

const DAY_SECONDS: u64 = 86_400;
/// The share of a daily budget whose crossing raises the budget alert.
const ALERT_RATIO: f64 = 0.8;

/// Days since the epoch, UTC: budgets renew at 00:00 UTC.
fn today() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() / DAY_SECONDS)
}

const NS_PER_SECOND: f64 = 1e9;

fn seconds_to_ns(seconds: f64) -> u64 {
    // `as` saturates: negative and NaN become 0, huge values u64::MAX.
    (seconds * NS_PER_SECOND) as u64
}

fn ns_to_seconds(ns: u64) -> f64 {
    ns as f64 / NS_PER_SECOND
}

#[pyclass(frozen, name = "Policy", module = "sidegate._native")]
pub(crate) struct PyPolicy {
    inner: Policy,
}

#[pymethods]
impl PyPolicy {
    #[new]
    #[pyo3(signature = (requests=None, tokens=None, max_concurrent=None, request_burst=None, period=60.0))]
    fn py_new(
        requests: Option<u64>,
        tokens: Option<u64>,
        max_concurrent: Option<u32>,
        request_burst: Option<u64>,
        period: f64,
    ) -> PyResult<Self> {
        let period = seconds_to_ns(period);
        let rate =
            |limit: Option<u64>, burst| limit.map(|l| Rate::new(l, period, burst)).transpose();
        let requests = rate(requests, request_burst).map_err(to_py)?;
        let tokens = rate(tokens, None).map_err(to_py)?;
        Ok(Self {
            inner: Policy {
                requests,
                tokens,
                max_concurrent,
            },
        })
    }
}

#[pyclass(frozen, name = "Decision", module = "sidegate._native")]
pub(crate) struct PyDecision {
    inner: Decision,
}

fn snapshot(snapshot: Option<Snapshot>) -> Option<(u64, u64, f64)> {
    snapshot.map(|s| (s.limit, s.remaining, ns_to_seconds(s.reset_ns)))
}

#[pymethods]
impl PyDecision {
    #[getter]
    fn allowed(&self) -> bool {
        self.inner.allowed()
    }

    #[getter]
    fn denied_by(&self) -> Option<&'static str> {
        self.inner.denied_by.map(|which| which.name())
    }

    #[getter]
    fn too_large(&self) -> bool {
        self.inner.too_large
    }

    #[getter]
    fn retry_after(&self) -> f64 {
        ns_to_seconds(self.inner.retry_after_ns)
    }

    #[getter]
    fn in_flight(&self) -> u32 {
        self.inner.in_flight
    }

    #[getter]
    fn requests(&self) -> Option<(u64, u64, f64)> {
        snapshot(self.inner.requests)
    }

    #[getter]
    fn tokens(&self) -> Option<(u64, u64, f64)> {
        snapshot(self.inner.tokens)
    }

    fn __repr__(&self) -> String {
        format!("Decision({:?})", self.inner)
    }
}

/// A plan's limits on one model, laid out once (`crate::ratelimit::shape`).
#[pyclass(frozen, name = "LimitShape", module = "sidegate._native")]
pub(crate) struct PyLimitShape {
    inner: Shape,
}

type HeaderSpec = (bool, Vec<(usize, bool, u64)>);

#[pymethods]
impl PyLimitShape {
    #[new]
    fn py_new(scopes: Vec<(String, Bound<'_, PyPolicy>, bool)>, headers: Vec<HeaderSpec>) -> Self {
        let scopes = scopes
            .into_iter()
            .map(|(suffix, policy, reserves_tokens)| Scope {
                suffix,
                policy: policy.get().inner,
                reserves_tokens,
            })
            .collect();
        let headers = headers
            .into_iter()
            .map(|(tokens, buckets)| HeaderKind {
                tokens,
                buckets: buckets
                    .into_iter()
                    .map(|(scope, tokens, per_minute)| HeaderBucket {
                        scope,
                        tokens,
                        per_minute,
                    })
                    .collect(),
            })
            .collect();
        Self {
            inner: Shape { scopes, headers },
        }
    }

    fn __len__(&self) -> usize {
        self.inner.scopes.len()
    }
}

#[pyclass(frozen, name = "Limiter", module = "sidegate._native")]
pub(crate) struct PyLimiter {
    inner: Limiter,
    ledgers: Ledgers,
    started: Instant,
}

impl PyLimiter {
    fn now_ns(&self, now: Option<f64>) -> u64 {
        match now {
            Some(seconds) => seconds_to_ns(seconds),
            None => u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX),
        }
    }
}

#[pymethods]
impl PyLimiter {
    #[new]
    #[pyo3(signature = (max_keys=1_000_000))]
    fn py_new(max_keys: usize) -> Self {
        Self {
            inner: Limiter::new(max_keys),
            ledgers: Ledgers::new(),
            started: Instant::now(),
        }
    }

    #[pyo3(name = "acquire", signature = (key, policy, tokens=0, now=None))]
    fn py_acquire(
        &self,
        key: &str,
        policy: &PyPolicy,
        tokens: u64,
        now: Option<f64>,
    ) -> PyDecision {
        let inner = self
            .inner
            .acquire(key, &policy.inner, tokens, self.now_ns(now));
        PyDecision { inner }
    }

    /// Acquire for several keys, all or nothing: `(refused index or None, decisions)`.
    #[pyo3(name = "acquire_all", signature = (asks, now=None))]
    fn py_acquire_all(
        &self,
        asks: Vec<(String, Bound<'_, PyPolicy>, u64)>,
        now: Option<f64>,
    ) -> (Option<usize>, Vec<PyDecision>) {
        let asks: Vec<Ask<'_>> = asks
            .iter()
            .map(|(key, policy, tokens)| Ask {
                key,
                policy: &policy.get().inner,
                tokens: *tokens,
            })
            .collect();
        let outcome = self.inner.acquire_all(&asks, self.now_ns(now));
        let decisions = outcome
            .decisions
            .into_iter()
            .map(|inner| PyDecision { inner });
        (outcome.refused, decisions.collect())
    }

    /// Free a shape's slots for `tenant` and true up `reserved` to `used` (the general path's
    /// release; `LimitTicket.settle` does this and the ledger for an admitted ticket).
    #[pyo3(name = "settle_shape", signature = (shape, tenant, reserved, used, now=None))]
    fn py_settle_shape(
        &self,
        shape: &PyLimitShape,
        tenant: &str,
        reserved: u64,
        used: u64,
        now: Option<f64>,
    ) {
        shape
            .inner
            .settle(&self.inner, tenant, reserved, used, self.now_ns(now));
    }

    #[pyo3(name = "release", signature = (key, policy, reserved=0, used=None, now=None))]
    fn py_release(
        &self,
        key: &str,
        policy: &PyPolicy,
        reserved: u64,
        used: Option<u64>,
        now: Option<f64>,
    ) {
        let used = used.unwrap_or(reserved);
        self.inner
            .release(key, &policy.inner, reserved, used, self.now_ns(now));
    }

    #[pyo3(name = "true_up", signature = (key, policy, reserved, used, now=None))]
    fn py_true_up(&self, key: &str, policy: &PyPolicy, reserved: u64, used: u64, now: Option<f64>) {
        self.inner
            .true_up(key, &policy.inner, reserved, used, self.now_ns(now));
    }

    #[pyo3(name = "peek", signature = (key, policy, now=None))]
    fn py_peek(&self, key: &str, policy: &PyPolicy, now: Option<f64>) -> PyDecision {
        PyDecision {
            inner: self.inner.peek(key, &policy.inner, self.now_ns(now)),
        }
    }

    /// A whole admission on this process's state: the ledger, then every scope of `shape`.
    /// Admitted: a `LimitTicket`. Refused: `(why, scope or -1, retry after in seconds, spent
    /// today)`, `why` being `blocked`, `budget` or the limit's name.
    #[pyo3(signature = (shape, tenant, reserve, budget, on_alert=None))]
    fn admit_ticket<'py>(
        slf: &Bound<'py, Self>,
        shape: &Bound<'py, PyLimitShape>,
        tenant: &Bound<'py, PyString>,
        reserve: u64,
        budget: Option<f64>,
        on_alert: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        let name = tenant.to_str()?;
        let now_ns = this.now_ns(None);
        let verdict = gate::admit(
            &this.inner,
            &this.ledgers,
            &shape.get().inner,
            name,
            reserve,
            budget,
            now_ns,
            today(),
        );
        let refused = |why: &str, scope: i64, retry_ns: u64, spent: f64| {
            (why, scope, ns_to_seconds(retry_ns), spent).into_bound_py_any(py)
        };
        match verdict {
            Verdict::Admitted(lines) => {
                let ticket = PyLimitTicket {
                    limiter: slf.clone().unbind(),
                    shape: shape.clone().unbind(),
                    tenant: tenant.clone().unbind(),
                    reserved: reserve,
                    budget,
                    on_alert: if budget.is_some() { on_alert } else { None },
                    header_lines: PyBytes::new(py, &lines).unbind(),
                    settled: AtomicBool::new(false),
                };
                Bound::new(py, ticket).map(Bound::into_any)
            }
            Verdict::Refused(index, decision) => {
                let why = decision.denied_by.map_or("capacity", |which| which.name());
                let spent = this.ledgers.day_of(name, today()).spent_usd;
                let scope = i64::try_from(index).unwrap_or(-1);
                refused(why, scope, decision.retry_after_ns, spent)
            }
            Verdict::Barred(Barred::Blocked { spent_usd }) => refused("blocked", -1, 0, spent_usd),
            Verdict::Barred(Barred::OverBudget { spent_usd }) => {
                refused("budget", -1, 0, spent_usd)
            }
        }
    }

    /// The ledger's refusal of `tenant` (`("blocked" | "budget", spent today)`), or None.
    fn ledger_bar(&self, tenant: &str, budget: Option<f64>) -> Option<(&'static str, f64)> {
        self.ledgers
            .bar(tenant, today(), budget)
            .map(|barred| match barred {
                Barred::Blocked { spent_usd } => ("blocked", spent_usd),
                Barred::OverBudget { spent_usd } => ("budget", spent_usd),
            })
    }

    /// Count tokens reserved by a request admitted outside `admit_ticket`.
    fn ledger_reserve(&self, tenant: &str, tokens: u64) {
        self.ledgers.reserve(tenant, today(), tokens);
    }

    /// Add an answer's cost and token difference to today's ledger; returns the spend after.
    fn ledger_spend(&self, tenant: &str, token_delta: i64, cost_usd: f64) -> f64 {
        self.ledgers.spend(tenant, today(), token_delta, cost_usd).after
    }

    fn set_blocked(&self, tenant: &str, blocked: bool) {
        self.ledgers.set_blocked(tenant, today(), blocked);
    }

    /// `(blocked, spent today, tokens today)`.
    fn ledger_day(&self, tenant: &str) -> (bool, f64, i64) {
        let day = self.ledgers.day_of(tenant, today());
        (day.blocked, day.spent_usd, day.tokens)
    }

    /// `(tenant, daily budget, spent today)` for every tenant admitted under a budget.
    fn budgets(&self) -> Vec<(String, f64, f64)> {
        self.ledgers.budgets(today())
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }
}

/// A request admitted by `Limiter.admit_ticket`: its `x-ratelimit-*` headers (as the lines
/// every answer carries, and as a dict for what needs one), and `settle`,
/// which ends it once (frees its slots, trues up its tokens, adds its cost to the day).
#[pyclass(frozen, name = "LimitTicket", module = "sidegate._native")]
pub(crate) struct PyLimitTicket {
    limiter: Py<PyLimiter>,
    shape: Py<PyLimitShape>,
    tenant: Py<PyString>,
    reserved: u64,
    budget: Option<f64>,
    /// `on_alert(tenant, cost_usd, budget_usd, spent_usd)` when this request's cost crosses
    /// 80 % of the daily budget.
    on_alert: Option<Py<PyAny>>,
    header_lines: Py<PyBytes>,
    settled: AtomicBool,
}

#[pymethods]
impl PyLimitTicket {
    /// A new dict each time: the lines serve the answers, this only errors and the aiohttp
    /// server.
    #[getter]
    fn headers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let headers = PyDict::new(py);
        for (name, value) in header_pairs(self.header_lines.as_bytes(py)) {
            headers.set_item(name, value)?;
        }
        Ok(headers)
    }

    /// `name: value\r\n` for each of its headers.
    #[getter]
    fn header_lines(&self, py: Python<'_>) -> Py<PyBytes> {
        self.header_lines.clone_ref(py)
    }

    /// Settle with what the exchange spent upstream (nothing for a cache hit or an answer
    /// that never came: `upstream == "-"`); later calls do nothing.
    fn settle(&self, exchange: &Bound<'_, PyAny>) -> PyResult<()> {
        if self.settled.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let py = exchange.py();
        // Compared as text, not with `==` (a rich comparison costs more than the read).
        let text_is = |name: &Bound<'_, PyString>, expected: &str| -> PyResult<bool> {
            let value = exchange.getattr(name)?;
            Ok(value
                .cast::<PyString>()
                .is_ok_and(|text| text.to_str().is_ok_and(|text| text == expected)))
        };
        let spent_nothing =
            text_is(intern!(py, "upstream"), "-")? || text_is(intern!(py, "cache"), "hit")?;
        let (used, cost) = if spent_nothing {
            (0, 0.0)
        } else {
            let tokens = |name| -> PyResult<u64> {
                Ok(exchange.getattr(name)?.extract::<u64>().unwrap_or(0))
            };
            let used = tokens(intern!(py, "input_tokens"))?
                .saturating_add(tokens(intern!(py, "output_tokens"))?);
            let cost: f64 = exchange.getattr(intern!(py, "cost_usd"))?.extract()?;
            (used, cost)
        };
        let limiter = self.limiter.get();
        let tenant = self.tenant.bind(py);
        let spent = gate::settle(
            &limiter.inner,
            &limiter.ledgers,
            &self.shape.get().inner,
            tenant.to_str()?,
            self.reserved,
            used,
            cost,
            limiter.now_ns(None),
            today(),
        );
        if let (Some(budget), Some(on_alert)) = (self.budget, &self.on_alert) {
            if spent.crossed(budget, ALERT_RATIO) {
                on_alert.call1(py, (tenant, cost, budget, spent.after))?;
            }
        }
        Ok(())
    }
}
