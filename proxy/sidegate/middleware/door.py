"""The OpenAI endpoints behind one door on the lean server: the middlewares' work, in their
order (errors outermost, then the request id, events, auth), in one coroutine.

aiohttp's chain costs a coroutine and a partial per middleware and another for the route on
every request, each resumed again whenever the request waits on its upstream. The door calls
the same helpers the middlewares do (`error_answer`, `assign_request_id`, `note_refusal`,
the authenticator) and then the pipeline, so both servers answer alike; the aiohttp server,
and every other route, still go through the middlewares.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from sidegate.auth import Authenticator
from sidegate.context import TENANT_KEY
from sidegate.errors import AuthenticationError, RateLimitError
from sidegate.inspection import Endpoint
from sidegate.keys import AUTH_KEY, PIPELINE_KEY
from sidegate.middleware.errors import error_answer
from sidegate.middleware.request_id import REQUEST_ID_HEADER, assign_request_id
from sidegate.observability.events import note_refusal
from sidegate.pipeline import Pipeline


def hot_doors(app: web.Application, kinds: dict[str, Endpoint]) -> dict[str, Handler]:
    """A door per path; the app must have started (its pipeline exists)."""
    pipeline, authenticator = app[PIPELINE_KEY], app[AUTH_KEY]
    return {path: _door(kind, pipeline, authenticator) for path, kind in kinds.items()}


def _door(kind: Endpoint, pipeline: Pipeline, authenticator: Authenticator) -> Handler:
    async def door(request: web.Request) -> web.StreamResponse:
        try:
            request_id = assign_request_id(request)
            try:
                authorization = request.headers.get("Authorization")
                api_key = request.headers.get("api-key")
                if authenticator.verifies_locally:  # no coroutine for a key lookup
                    tenant = authenticator.authenticate(authorization, api_key)
                else:
                    tenant = await authenticator.authenticate_request(authorization, api_key)
                request[TENANT_KEY] = tenant
                response = await pipeline.handle(request, kind)
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

    return door
