//! `MetricValue` and `BucketObserver`: the storage of Sidegate's Prometheus samples in a
//! single-process server, and a histogram child's `observe` as one native call.
//!
//! prometheus-client keeps each sample in a `ValueClass` object it only calls `inc`, `set`
//! and `get` on; a request updates about a dozen of them. As Python objects, each update was
//! a Python call and each histogram observation a closure doing a bisection and two additions.
//! Here they are native: the exposition still comes from prometheus-client, unchanged.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

/// One sample's value: an f64 kept as its bits, so the frozen class needs no lock.
#[pyclass(frozen, name = "MetricValue", module = "sidegate._native")]
pub(crate) struct PyMetricValue {
    bits: AtomicU64,
    exemplar: Mutex<Option<Py<PyAny>>>,
}

impl PyMetricValue {
    fn add(&self, amount: f64) {
        // A compare-and-swap loop: an update from another thread is never lost either.
        let _ = self
            .bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + amount).to_bits())
            });
    }
}

#[pymethods]
impl PyMetricValue {
    /// Takes (and ignores) prometheus-client's `ValueClass` arguments.
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn py_new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        Self {
            bits: AtomicU64::new(0.0f64.to_bits()),
            exemplar: Mutex::new(None),
        }
    }

    fn inc(&self, amount: f64) {
        self.add(amount);
    }

    #[pyo3(signature = (value, timestamp=None))]
    fn set(&self, value: f64, timestamp: Option<f64>) {
        let _ = timestamp;
        self.bits.store(value.to_bits(), Ordering::Relaxed);
    }

    fn get(&self) -> f64 {
        f64::from_bits(self.bits.load(Ordering::Relaxed))
    }

    fn set_exemplar(&self, exemplar: Py<PyAny>) {
        *self.exemplar.lock() = Some(exemplar);
    }

    fn get_exemplar(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.exemplar.lock().as_ref().map(|exemplar| exemplar.clone_ref(py))
    }
}

/// A histogram child's `observe`: the sum, and the first bucket whose upper bound is at
/// least the amount (`bisect_left`, as prometheus-client's own scan finds it).
#[pyclass(frozen, name = "BucketObserver", module = "sidegate._native")]
pub(crate) struct PyBucketObserver {
    total: Py<PyMetricValue>,
    buckets: Vec<Py<PyMetricValue>>,
    bounds: Vec<f64>,
}

#[pymethods]
impl PyBucketObserver {
    #[new]
    fn py_new(
        total: Py<PyMetricValue>,
        buckets: Vec<Py<PyMetricValue>>,
        bounds: Vec<f64>,
    ) -> PyResult<Self> {
        if buckets.is_empty() || buckets.len() != bounds.len() {
            return Err(PyValueError::new_err(
                "a histogram has one bucket per upper bound, +Inf included",
            ));
        }
        Ok(Self {
            total,
            buckets,
            bounds,
        })
    }

    fn __call__(&self, amount: f64) {
        self.total.get().add(amount);
        let at = self.bounds.partition_point(|bound| *bound < amount);
        let last = self.buckets.len() - 1;
        self.buckets[at.min(last)].get().add(1.0);
    }
}
