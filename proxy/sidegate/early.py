"""A request's head start: what the lean server did for it in the socket's callback, before
its task began.

Each step before the upstream write costs tens of µs when it runs on a core that has idled
(caches cold; see bench/README.md), and all of it comes before the upstream has the request.
So for a whole request on an idle connection, the door authenticates it and the pipeline
inspects, routes, admits it and writes it to an idle upstream connection at once, in a few
plain calls (`Pipeline.start_early`); the request id and the rest of the bookkeeping follow
in the task. The task takes over wherever the head start stopped: any step that declines
(a limit that needs Redis, a cache lookup, no idle connection, tracing on) or fails is left
to the task, which does it as it does for every other request, so answers, errors and
failover are the same either way. The one outcome carried over rather than redone is a
limit's refusal (counting it twice would be wrong).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sidegate.admission import Ticket
from sidegate.cache import CacheKey
from sidegate.errors import ProxyError
from sidegate.exchange import Exchange
from sidegate.inspection import RequestFacts
from sidegate.routing import Candidate
from sidegate.upstream.headers import ClientHeaders
from sidegate.upstream.pool import Endpoint
from sidegate.upstream.transport import SentRequest


@dataclass(slots=True)
class FirstAttempt:
    """The first candidate's upstream body and endpoints, in order; `sent` when its request
    went to the first endpoint already (at `sent_at`, `time.perf_counter()`)."""

    body: bytes
    endpoints: Sequence[Endpoint]
    sent: SentRequest | None = None
    sent_at: float = 0.0


class EarlyStart(Protocol):
    """A hot route's handler that can begin a request before its task: `start_early` takes it
    from the head's headers and whole body (before the server makes a request object, which
    comes after the upstream write), and the handler, called as `handler(request, early)`,
    continues from what it gives. None: nothing was done, the handler does it all."""

    def start_early(self, headers: ClientHeaders, body: bytes) -> HeadStart | None: ...


@dataclass(slots=True)
class HeadStart:
    """How far a request got before its task: each field is set once its step is done."""

    exchange: Exchange
    body: bytes = b""
    facts: RequestFacts | None = None
    candidates: Sequence[Candidate] = ()
    refusal: ProxyError | None = None
    ticket: Ticket | None = None
    key: CacheKey | None = None
    keyed: bool = False  # `key` was worked out (it may be None: nothing to cache)
    first: FirstAttempt | None = None
