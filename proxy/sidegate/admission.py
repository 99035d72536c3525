"""Admission: the seam where rate limits, concurrency limits and budgets decide.

`Admission.admit` runs before any upstream work. It either raises `RateLimitError` /
`QuotaExceededError` (429) or returns a `Ticket` whose headers go on the response and whose
`settle` runs exactly once when the request ends (true-up of reserved tokens with real usage,
release of a concurrency slot, budget charge) — for streams, cut streams and cache hits too.
`admit_now` is the same decision when it needs no I/O (a tenant with nothing limited, the
memory backend), and None otherwise; settling never waits (a backend that needs I/O to settle
does it in a task of its own). Both spare the request path a coroutine each.

The gateway's implementation is `sidegate.limits.LimitAdmission` (built by
`sidegate.limits.build_admission`): plans' RPM/TPM/concurrency per tenant and per tenant x
model, daily budgets and the operator's block list, held in memory or in Redis so they hold
across replicas. A tenant with no plan passes straight through (no state call) unless an
operator may block tenants (`admin.token` set). `Unlimited` admits everything, for embedding
the pipeline without limits.
"""

from __future__ import annotations

from typing import Protocol

from sidegate.exchange import Exchange
from sidegate.inspection import RequestFacts
from sidegate.routing import Candidate


class Ticket(Protocol):
    @property
    def headers(self) -> dict[str, str]:
        """`x-ratelimit-*` headers for the response."""
        ...

    @property
    def header_lines(self) -> bytes:
        """The same headers as `name: value\\r\\n` lines, as the lean server writes them."""
        ...

    def settle(self, exchange: Exchange) -> None:
        """Called once at the end with the real usage in `exchange`; never waits."""
        ...


class Admission(Protocol):
    def admit_now(
        self, exchange: Exchange, facts: RequestFacts, candidate: Candidate
    ) -> Ticket | None:
        """`admit`, when it can decide without I/O; else None (then `admit` must run)."""
        ...

    async def admit(
        self, exchange: Exchange, facts: RequestFacts, candidate: Candidate
    ) -> Ticket: ...

    async def close(self) -> None: ...


class _FreeTicket:
    __slots__ = ()

    header_lines = b""

    @property
    def headers(self) -> dict[str, str]:
        return {}

    def settle(self, exchange: Exchange) -> None:
        return None


_FREE = _FreeTicket()


class Unlimited:
    """Admits everything."""

    def admit_now(
        self, exchange: Exchange, facts: RequestFacts, candidate: Candidate
    ) -> Ticket | None:
        return _FREE

    async def admit(self, exchange: Exchange, facts: RequestFacts, candidate: Candidate) -> Ticket:
        return _FREE

    async def close(self) -> None:
        return None
