"""Every Prometheus metric Sidegate exports, defined in one place (the contract's names).

Metrics live in a per-application `CollectorRegistry` (no module-level registry), so tests can
build many apps in one process and each sees only its own counts. Beside the contract's `llm_*`
names, the OpenTelemetry GenAI client instruments are exported under the names the OTel
Prometheus exporter gives them (`gen_ai.client.token.usage` -> `gen_ai_client_token_usage`,
attribute dots -> underscores), so dashboards built for other GenAI gateways work unchanged.

With `--workers N`, values live in per-process files (prometheus-client's multiprocess mode, see
`observability.multiprocess`) and `exposition()` sums every worker's.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
    values,
)

from sidegate._native import BucketObserver, MetricValue

LATENCY_BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)
OVERHEAD_BUCKETS: Final = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
)

# OpenTelemetry GenAI semantic conventions' recommended bucket boundaries.
GENAI_TOKEN_BUCKETS: Final = tuple(float(4**i) for i in range(14))  # 1 .. 67108864
GENAI_DURATION_BUCKETS: Final = tuple(0.01 * 2**i for i in range(14))  # 0.01 .. 81.92
GENAI_FIRST_CHUNK_BUCKETS: Final = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
_GENAI_LABELS: Final = (
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
    "gen_ai_response_model",
)
# Label value standing for "every tenant" when the tenant label is turned off.
ALL_TENANTS: Final = "-"

# The contract's metric names; dashboards and alerts are checked against this list.
METRIC_NAMES: Final = (
    "llm_requests_total",
    "llm_tokens_total",
    "llm_cost_usd_total",
    "llm_request_duration_seconds",
    "llm_upstream_duration_seconds",
    "llm_time_to_first_token_seconds",
    "llm_proxy_overhead_seconds",
    "llm_active_requests",
    "llm_cache_requests_total",
    "llm_rate_limited_total",
    "llm_upstream_up",
    "llm_budget_remaining_usd",
)


# Distinct label sets kept per metric before the cache starts over (labels are bounded anyway:
# configured models and tenants, HTTP statuses).
_MAX_CHILDREN: Final = 4096


class Value(Protocol):
    """A metric child's value: what `Counter.inc`, `Gauge.inc/dec/set` update after their
    per-call checks (the amount's sign, the child's labels), which a resolved child never
    needs again."""

    def inc(self, amount: float) -> None: ...

    def set(self, value: float, timestamp: float | None = None) -> None: ...


def value_of(child: Any) -> Value:
    value: Value = child._value
    return value


class Values:
    """A metric's children's values by label values: `labels()` validates and locks on every
    call, a dict lookup does not."""

    __slots__ = ("_children", "_metric")

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Value] = {}

    def __call__(self, *labels: str) -> Value:
        value = self._children.get(labels)
        if value is None:
            if len(self._children) >= _MAX_CHILDREN:
                self._children.clear()
            value = self._children[labels] = value_of(self._metric.labels(*labels))
        return value


# prometheus-client's metric value without its lock, and a histogram child's `observe` as one
# call (native: a request updates about a dozen values, each a Python call before).
# `use_loop_values` puts the value in place in a single-process server.
LoopValue = MetricValue


def use_loop_values() -> None:
    """Metric values without locks from now on (not with `--workers N`: there they live in
    files shared between processes)."""
    if not multiprocess_mode():
        values.ValueClass = LoopValue


class LoopHistogram(Histogram):
    """A `Histogram` whose `observe` finds the bucket by bisection and skips the per-call
    checks (Sidegate observes only label children and never passes exemplars); the same
    samples otherwise."""

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        self._sum.inc(amount)
        # The first bound >= amount, as Histogram.observe's scan finds; +Inf ends the bounds.
        self._buckets[bisect_left(self._upper_bounds, amount)].inc(1)

    def observer(self) -> Callable[[float], None]:
        """`observe` for a label child, as one call: with native values (`LoopValue`) a
        native `BucketObserver` adds to the sum and the bucket."""
        total, buckets = self._sum, self._buckets
        if type(total) is not LoopValue or any(type(b) is not LoopValue for b in buckets):
            return self.observe
        return BucketObserver(total, buckets, list(self._upper_bounds))


@dataclass(frozen=True, slots=True)
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    tokens: Counter
    cost: Counter
    request_duration: LoopHistogram
    upstream_duration: LoopHistogram
    time_to_first_token: LoopHistogram
    proxy_overhead: LoopHistogram
    active_requests: Gauge
    cache_requests: Counter
    rate_limited: Counter
    upstream_up: Gauge
    budget_remaining: Gauge
    genai_token_usage: LoopHistogram
    genai_duration: LoopHistogram
    genai_first_chunk: LoopHistogram
    tenant_label: bool = True
    # Run before each scrape: values kept elsewhere (the memory limits' ledger) are copied
    # into their metrics then, rather than on every request.
    before_scrape: list[Callable[[], None]] = field(default_factory=list)

    def tenant(self, name: str) -> str:
        """The `tenant` label value for `name` (bounded when the tenant label is off)."""
        return name if self.tenant_label else ALL_TENANTS


def multiprocess_mode() -> bool:
    """True in a worker forked under `observability.multiprocess.shared_metrics`."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


def exposition(metrics: Metrics) -> bytes:
    """The Prometheus text for a scrape: this process's, or every worker's summed."""
    for refresh in metrics.before_scrape:
        refresh()
    if not multiprocess_mode():
        return generate_latest(metrics.registry)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    ProcessCollector(registry=registry)  # the answering worker's memory, for the memory alert
    return generate_latest(registry)


def build_metrics(
    registry: CollectorRegistry | None = None, *, tenant_label: bool = True
) -> Metrics:
    if registry is None:
        registry = CollectorRegistry(auto_describe=True)
        # process_resident_memory_bytes and friends, for the memory alert.
        ProcessCollector(registry=registry)
    return Metrics(
        registry=registry,
        requests=Counter(
            "llm_requests",
            "Requests answered, by model, upstream, tenant and HTTP status.",
            ("model", "upstream", "tenant", "status"),
            registry=registry,
        ),
        tokens=Counter(
            "llm_tokens",
            "Tokens accounted, by model, tenant and token_type (input|output).",
            ("model", "tenant", "token_type"),
            registry=registry,
        ),
        cost=Counter(
            "llm_cost_usd",
            "Spend in US dollars from the model price table.",
            ("model", "tenant"),
            registry=registry,
        ),
        request_duration=LoopHistogram(
            "llm_request_duration_seconds",
            "Time from request received to last byte sent.",
            ("model",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        upstream_duration=LoopHistogram(
            "llm_upstream_duration_seconds",
            "Time spent waiting on the upstream, per attempt.",
            ("model", "upstream"),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        time_to_first_token=LoopHistogram(
            "llm_time_to_first_token_seconds",
            "Time from request received to the first streamed chunk sent.",
            ("model",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        proxy_overhead=LoopHistogram(
            "llm_proxy_overhead_seconds",
            "Time spent inside Sidegate per request, upstream time excluded.",
            buckets=OVERHEAD_BUCKETS,
            registry=registry,
        ),
        active_requests=Gauge(
            "llm_active_requests",
            "Requests in flight.",
            ("model",),
            registry=registry,
            multiprocess_mode="livesum",
        ),
        cache_requests=Counter(
            "llm_cache_requests",
            "Cache lookups, by cache_type and result (hit|miss).",
            ("cache_type", "result"),
            registry=registry,
        ),
        rate_limited=Counter(
            "llm_rate_limited",
            "Requests refused by a limit (requests|tokens|concurrency|budget), by tenant.",
            ("tenant", "limit"),
            registry=registry,
        ),
        upstream_up=Gauge(
            "llm_upstream_up",
            "1 when the endpoint is healthy, 0 when it is marked down.",
            ("upstream", "endpoint"),
            registry=registry,
            # A worker's last word on an endpoint holds for every worker (with "max", a worker
            # that never tried it would hide another's 0); a dead worker's stays until a newer.
            multiprocess_mode="mostrecent",
        ),
        budget_remaining=Gauge(
            "llm_budget_remaining_usd",
            "Daily budget left for the tenant (UTC day).",
            ("tenant",),
            registry=registry,
            multiprocess_mode="min",
        ),
        genai_token_usage=LoopHistogram(
            "gen_ai_client_token_usage",
            "OpenTelemetry gen_ai.client.token.usage: input and output tokens per operation.",
            (*_GENAI_LABELS, "gen_ai_token_type"),
            buckets=GENAI_TOKEN_BUCKETS,
            registry=registry,
        ),
        genai_duration=LoopHistogram(
            "gen_ai_client_operation_duration_seconds",
            "OpenTelemetry gen_ai.client.operation.duration: time of one GenAI operation.",
            (*_GENAI_LABELS, "error_type"),
            buckets=GENAI_DURATION_BUCKETS,
            registry=registry,
        ),
        genai_first_chunk=LoopHistogram(
            "gen_ai_client_operation_time_to_first_chunk_seconds",
            "OpenTelemetry gen_ai.client.operation.time_to_first_chunk (streamed operations).",
            _GENAI_LABELS,
            buckets=GENAI_FIRST_CHUNK_BUCKETS,
            registry=registry,
        ),
        tenant_label=tenant_label,
    )
