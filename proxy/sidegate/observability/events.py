"""Structured events for what the request path refuses before or instead of answering.

`events_middleware` sits between request ids and authentication (STYLE §14: errors, request_id,
access-log/metrics, auth). It logs one `key_rejected` event per refused credential (with a
non-reversible id of the presented key, never the key) and accounts for the request, which
never reached the pipeline: on a proxied path as the pipeline accounts for any request
(`Pipeline.refused`: span, counts, access line), elsewhere under `/v1/` in
`llm_requests_total`. And one `rate_limited` / `budget_exhausted` event per 429 with the tenant
and the limit that refused it. Upstream down/up events come from the upstream pools, budget
warnings from the limits.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from sidegate.auth import Tenant
from sidegate.context import REQUEST_ID_KEY, TENANT_KEY
from sidegate.errors import AuthenticationError, QuotaExceededError, RateLimitError
from sidegate.keys import METRICS_KEY, PIPELINE_KEY
from sidegate.observability.catalog import KINDS

log = logging.getLogger("sidegate.events")

# The tenant of a request whose credential was refused.
UNKNOWN_TENANT: Final = "-"


def key_id(authorization: str | None, api_key: str | None) -> str | None:
    """The same short id `auth` gives a configured key: lets an operator spot a revoked key."""
    presented = api_key
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            presented = token.strip()
    if not presented:
        return None
    return hashlib.sha256(presented.encode("utf-8")).digest()[:6].hex()


@web.middleware
async def events_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except (AuthenticationError, RateLimitError) as error:
        note_refusal(request, error)
        raise


def note_refusal(request: web.Request, error: AuthenticationError | RateLimitError) -> None:
    """The event (and, for a refused key, the count) of a request refused with `error`."""
    if isinstance(error, RateLimitError):
        _rate_limited(request, error)
    elif TENANT_KEY not in request and request.path.startswith("/v1/"):
        # Refused by API-key authentication (not /metrics or admin tokens, not further in).
        _key_rejected(request, error)


def _key_rejected(request: web.Request, error: AuthenticationError) -> None:
    presented = key_id(request.headers.get("Authorization"), request.headers.get("api-key"))
    kind = KINDS.get(request.path)
    if kind is not None:
        # A proxied path: the refusal gets the span, counts and access line any request gets.
        unknown = Tenant(UNKNOWN_TENANT, None, presented)
        request.app[PIPELINE_KEY].refused(request, kind, unknown, error)
    else:
        metrics = request.app[METRICS_KEY]
        metrics.requests.labels("-", "-", metrics.tenant(UNKNOWN_TENANT), str(error.status)).inc()
    log.warning(
        "api key rejected",
        extra={
            "event": "key_rejected",
            "request_id": request.get(REQUEST_ID_KEY),
            "code": error.instance_code,
            "key_id": presented,
            "path": request.path,
            "remote": request.remote,
        },
    )


def _rate_limited(request: web.Request, error: RateLimitError) -> None:
    tenant = request.get(TENANT_KEY)
    budget = isinstance(error, QuotaExceededError)
    log.warning(
        "budget exhausted" if budget else "rate limited",
        extra={
            "event": "budget_exhausted" if budget else "rate_limited",
            "request_id": request.get(REQUEST_ID_KEY),
            "tenant": tenant.name if tenant is not None else None,
            "code": error.instance_code,
            "limit": error.limit or error.type,
            "retry_after_s": error.headers.get("Retry-After"),
        },
    )
