"""`Exchange`: what one request did, filled in as it goes and accounted for at the end.

Every concern of the request path (limits, cache, telemetry, spend) reads and writes this one
record, so none of them needs to know about the others.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sidegate.auth import Tenant
from sidegate.errors import ProxyError, status_of
from sidegate.inspection import Endpoint


# No slots, and an `__init__` of its own: the defaults are the class's until a step sets its
# field, so making one per request sets five attributes, not nineteen.
@dataclass(init=False, eq=False)
class Exchange:
    request_id: str
    tenant: Tenant
    kind: Endpoint
    started: float  # time.perf_counter() when the request arrived
    model: str = "-"  # the model the client asked for
    served_model: str = "-"  # the configured model that answered (differs after a fallback)
    upstream: str = "-"
    endpoint: str = "-"
    status: int = 0
    stream: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    cache: str = "miss"  # hit | miss
    upstream_seconds: float = 0.0
    first_byte_at: float | None = None
    trace_id: str | None = None
    span_id: str | None = None
    attempts: list[str] = field(default_factory=list)
    error: str | None = None  # the code of the error answered with, if any

    def __init__(
        self, request_id: str, tenant: Tenant, kind: Endpoint, started: float, model: str = "-"
    ) -> None:
        self.request_id = request_id
        self.tenant = tenant
        self.kind = kind
        self.started = started
        if model != "-":
            self.model = model
        self.attempts = []

    def overhead_seconds(self, now: float) -> float:
        """Time spent inside Sidegate so far: wall time minus time waiting on upstreams."""
        spent = now - self.started - self.upstream_seconds
        return spent if spent > 0.0 else 0.0  # not max(): it parses its arguments per call

    def fail(self, error: ProxyError) -> None:
        """The request is answered with `error`: its status and code go to the access line,
        and the answer carries the gateway's headers as every other answer does."""
        self.status = status_of(error)
        self.error = error.instance_code or error.type
        error.accounted = True
        headers = error.headers
        headers.setdefault("x-cache", self.cache)
        if "x-sidegate-overhead-ms" not in headers:
            overhead = self.overhead_seconds(time.perf_counter())
            headers["x-sidegate-overhead-ms"] = f"{overhead * 1000:.3f}"
