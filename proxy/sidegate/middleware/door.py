"""The OpenAI endpoints behind one door on the lean server: the middlewares' work, in their
order (errors outermost, then the request id, events, auth), in one coroutine.

aiohttp's chain costs a coroutine and a partial per middleware and another for the route on
every request, each resumed again whenever the request waits on its upstream. The door calls
the same helpers the middlewares do (`error_answer`, `assign_request_id`, `note_refusal`,
the authenticator) and then the pipeline, so both servers answer alike; the aiohttp server,
and every other route, still go through the middlewares.

`Door.start_early` lets the lean server begin a whole request in the socket's callback, from
its head's headers and body: the key is checked and the pipeline takes the request as far as
the upstream write (`sidegate.early`); `door(request, early)` then does the rest.
"""

from __future__ import annotations

import time

from aiohttp import web

from sidegate.auth import Authenticator
from sidegate.context import TENANT_KEY
from sidegate.early import HeadStart
from sidegate.errors import AuthenticationError, RateLimitError
from sidegate.exchange import Exchange
from sidegate.inspection import Endpoint
from sidegate.keys import AUTH_KEY, PIPELINE_KEY
from sidegate.middleware.errors import error_answer
from sidegate.middleware.request_id import REQUEST_ID_HEADER, assign_request_id
from sidegate.observability.events import note_refusal
from sidegate.pipeline import Pipeline
from sidegate.upstream.headers import ClientHeaders


def hot_doors(app: web.Application, kinds: dict[str, Endpoint]) -> dict[str, Door]:
    """A door per path; the app must have started (its pipeline exists)."""
    pipeline, authenticator = app[PIPELINE_KEY], app[AUTH_KEY]
    return {path: Door(kind, pipeline, authenticator) for path, kind in kinds.items()}


class Door:
    """The hot route's handler (`await door(request)`), which can also start early."""

    __slots__ = ("_authenticator", "_kind", "_pipeline")

    def __init__(self, kind: Endpoint, pipeline: Pipeline, authenticator: Authenticator) -> None:
        self._kind = kind
        self._pipeline = pipeline
        self._authenticator = authenticator

    def start_early(self, headers: ClientHeaders, body: bytes) -> HeadStart | None:
        """The handler's work up to the upstream write, done now, outside any task (see
        `sidegate.early`); `self(request, early)` does the rest. None when the key is not
        checked locally, or not accepted: the handler answers it as any request."""
        authenticator = self._authenticator
        if not authenticator.verifies_locally:
            return None
        try:
            tenant = authenticator.authenticate_headers(headers)
        except Exception:
            return None
        # The id comes later (in the task, after the write); the exchange gets it then.
        exchange = Exchange("", tenant, self._kind, time.perf_counter())
        return self._pipeline.start_early(headers, body, self._kind, exchange)

    async def __call__(
        self, request: web.Request, early: HeadStart | None = None
    ) -> web.StreamResponse:
        try:
            request_id = assign_request_id(request)
            try:
                if early is not None:
                    request[TENANT_KEY] = early.exchange.tenant
                else:
                    authorization = request.headers.get("Authorization")
                    api_key = request.headers.get("api-key")
                    authenticator = self._authenticator
                    if authenticator.verifies_locally:  # no coroutine for a key lookup
                        tenant = authenticator.authenticate(authorization, api_key)
                    else:
                        tenant = await authenticator.authenticate_request(authorization, api_key)
                    request[TENANT_KEY] = tenant
                response = await self._pipeline.handle(request, self._kind, early)
            except (AuthenticationError, RateLimitError) as error:
                note_refusal(request, error)
                raise
            if not response.prepared:
                response.headers[REQUEST_ID_HEADER] = request_id
            return response
        except Exception as exc:
            answer = error_answer(request, exc)
            if answer is None:
                raise
            return answer
