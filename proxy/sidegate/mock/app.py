"""The mock's aiohttp application: routes, OpenAI-shaped errors, and the blocking runner."""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from sidegate.errors import ProxyError
from sidegate.mock.completions import chat_completions, completions
from sidegate.mock.embeddings import ENCODED_VECTORS_KEY, EncodedVectors, embeddings
from sidegate.mock.wire import ARRIVED_NS, MOCK_CONFIG_KEY, MockConfig, json_response

MOCK_MODELS: Final = ("mock-gpt", "mock-gpt-mini", "mock-embedding")
# A fixed date keeps the model list byte-for-byte stable between runs.
_MODELS_CREATED: Final = 1_700_000_000
# Bodies up to this size are accepted: above the gateway's default cap, so the gateway decides.
_MAX_BODY_BYTES: Final = 64 * 1024 * 1024
# In-flight streams get this long to finish on SIGTERM; a mock has nothing worth draining longer.
_SHUTDOWN_TIMEOUT_S: Final = 1.0

_log = logging.getLogger("sidegate.mock")

# The head of the last request to a model route, for `GET /_mock/last-request`: what a gateway
# in front of the mock really sent (its key, the client headers it passed on or dropped).
LAST_REQUEST_KEY: Final = web.AppKey("LAST_REQUEST_KEY", dict)


def build_mock_app(
    *, latency_ms: float = 0.0, tokens_per_second: float = 0.0, stamp_events: bool = False
) -> web.Application:
    """The mock model server as an application, ready for `web.run_app` or a test server."""
    if not (0 <= latency_ms < math.inf and 0 <= tokens_per_second < math.inf):
        raise ValueError("latency_ms and tokens_per_second must be finite and not negative")
    app = web.Application(middlewares=[_errors, _remember], client_max_size=_MAX_BODY_BYTES)
    app[MOCK_CONFIG_KEY] = MockConfig(
        latency_s=latency_ms / 1000,
        seconds_per_token=1 / tokens_per_second if tokens_per_second > 0 else 0.0,
        stamp_events=stamp_events,
    )
    app[ENCODED_VECTORS_KEY] = EncodedVectors()
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/v1/models/{model:.+}", _model)
    app.router.add_get("/health", _health)
    app.router.add_get("/_mock/last-request", _last_request)
    app[LAST_REQUEST_KEY] = {}
    return app


def run_mock_upstream(
    *,
    host: str,
    port: int,
    latency_ms: float = 0.0,
    tokens_per_second: float = 0.0,
    stamp_events: bool = False,
) -> None:
    """Serve the mock on host:port until SIGINT/SIGTERM (blocking)."""
    import uvloop

    app = build_mock_app(
        latency_ms=latency_ms, tokens_per_second=tokens_per_second, stamp_events=stamp_events
    )
    web.run_app(
        app,
        host=host,
        port=port,
        loop=uvloop.new_event_loop(),
        access_log=None,
        print=_announce(host, port),
        shutdown_timeout=_SHUTDOWN_TIMEOUT_S,
        # A client that gives up on `!sleep 60000` must not leave its handler sleeping.
        handler_cancellation=True,
    )


def _announce(host: str, port: int) -> Callable[..., None]:
    def announce(*_: object) -> None:
        print(f"sidegate mock-upstream listening on http://{host}:{port}", file=sys.stderr)

    return announce


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes an OpenAI-shaped JSON error; clients never see a traceback."""
    try:
        return await handler(request)
    except ProxyError as exc:
        return json_response(exc.body(), status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_response(_http_error_body(request, exc), status=exc.status)
    except ConnectionError:
        raise
    except Exception:
        _log.exception("mock upstream failed on %s %s", request.method, request.path)
        body = {"message": "The mock upstream failed.", "type": "server_error"}
        return json_response({"error": {**body, "param": None, "code": None}}, status=500)


@web.middleware
async def _remember(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.app[MOCK_CONFIG_KEY].stamp_events:
        request[ARRIVED_NS] = time.monotonic_ns()
    if request.path.startswith("/v1/"):
        # The app's state is frozen once it serves: the dict made at start-up is refilled.
        last = request.app[LAST_REQUEST_KEY]
        last["method"] = request.method
        last["path"] = request.path_qs
        last["headers"] = [[name, value] for name, value in request.headers.items()]
    return await handler(request)


async def _last_request(request: web.Request) -> web.Response:
    """The method, target and headers (in order, as sent) of the last `/v1/` request."""
    return json_response(request.app[LAST_REQUEST_KEY])


def _http_error_body(request: web.Request, exc: web.HTTPException) -> dict[str, object]:
    if exc.status == 404:
        message, code = f"Unknown request URL: {request.method} {request.path}.", "unknown_url"
    elif exc.status == 405:
        message, code = f"{request.method} is not allowed on {request.path}.", "method_not_allowed"
    elif exc.status == 413:
        message, code = "The request body is too large.", "request_too_large"
    else:
        message, code = exc.reason, None
    error_type = "server_error" if exc.status >= 500 else "invalid_request_error"
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


async def _models(_: web.Request) -> web.Response:
    return json_response({"object": "list", "data": [_model_object(m) for m in MOCK_MODELS]})


async def _model(request: web.Request) -> web.Response:
    # Any model name is served, so any model "exists".
    return json_response(_model_object(request.match_info["model"]))


async def _health(_: web.Request) -> web.Response:
    return json_response({"status": "ok"})


def _model_object(model: str) -> dict[str, object]:
    return {"id": model, "object": "model", "created": _MODELS_CREATED, "owned_by": "sidegate"}
