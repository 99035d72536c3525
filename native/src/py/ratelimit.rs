use std::time::Instant;

use pyo3::prelude::*;
use pyo3::intern;
use pyo3::types::{PyDict, PyString, PyTuple};

use super::errors::to_py;
use crate::ratelimit::shape::{Admission, HeaderBucket, HeaderKind, Scope, Shape};
use crate::ratelimit::{Ask, Decision, Limiter, Policy, Rate, Snapshot};

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

    /// Charge a shape's scopes for `tenant`: `(None, headers)` or `(refused scope, decision)`.
    #[pyo3(name = "admit_shape", signature = (shape, tenant, reserve, now=None))]
    fn py_admit_shape<'py>(
        &self,
        py: Python<'py>,
        shape: &PyLimitShape,
        tenant: &str,
        reserve: u64,
        now: Option<f64>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        match shape
            .inner
            .admit(&self.inner, tenant, reserve, self.now_ns(now))
        {
            Admission::Admitted(headers) => {
                let dict = PyDict::new(py);
                for (name, value) in headers {
                    dict.set_item(header_name(py, name), value)?;
                }
                (py.None(), dict).into_pyobject(py)
            }
            Admission::Refused(index, inner) => (index, PyDecision { inner }).into_pyobject(py),
        }
    }

    /// End a request admitted by `admit_shape`: free its slots, true up `reserved` to `used`.
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

    fn __len__(&self) -> usize {
        self.inner.len()
    }
}

/// The `x-ratelimit-*` names as interned strings: made and hashed once, not on every answer.
fn header_name<'py>(py: Python<'py>, name: &'static str) -> Bound<'py, PyString> {
    let interned = match name {
        "x-ratelimit-limit-requests" => intern!(py, "x-ratelimit-limit-requests"),
        "x-ratelimit-remaining-requests" => intern!(py, "x-ratelimit-remaining-requests"),
        "x-ratelimit-reset-requests" => intern!(py, "x-ratelimit-reset-requests"),
        "x-ratelimit-limit-tokens" => intern!(py, "x-ratelimit-limit-tokens"),
        "x-ratelimit-remaining-tokens" => intern!(py, "x-ratelimit-remaining-tokens"),
        "x-ratelimit-reset-tokens" => intern!(py, "x-ratelimit-reset-tokens"),
        other => return PyString::new(py, other),
    };
    interned.clone()
}
