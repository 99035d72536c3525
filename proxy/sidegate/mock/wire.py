"""What every mock handler shares: its settings, JSON bodies, request parsing, waiting, cutting."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass
from typing import Any, Final

import orjson
from aiohttp import web

from sidegate.errors import InvalidRequestError

# After the last chunk before a `!drop`, clients get this long to read what they were sent:
# aiohttp's client raises a stored connection error before handing out data it already buffered.
DROP_GRACE_S: Final = 0.1
_FLUSH_POLLS: Final = 200  # of 5 ms each
_MAX_N: Final = 128
_MAX_TOKEN_ID: Final = 1 << 31


@dataclass(frozen=True, slots=True)
class MockConfig:
    latency_s: float
    seconds_per_token: float  # 0: as fast as possible
    stamp_events: bool = False  # SSE comments with the mock's clock (see `sidegate.mock_upstream`)


MOCK_CONFIG_KEY: Final = web.AppKey("MOCK_CONFIG_KEY", MockConfig)
# Where a request's arrival (time.monotonic_ns) is kept when events are stamped.
ARRIVED_NS: Final = "sidegate_mock_arrived_ns"


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


async def read_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or an OpenAI-shaped 400."""
    raw = await request.read()
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"Request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidRequestError("Request body must be a JSON object.")
    return payload


def require_model(payload: dict[str, Any]) -> str:
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("You must provide a model parameter.", param="model")
    return model


def optional_int(payload: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = payload.get(name)
    if value is None:
        return None
    # bool is an int in Python; an integer field must not accept true/false.
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidRequestError(f"'{name}' must be an integer from {low} to {high}.", param=name)
    return value


def is_token_ids(items: list[Any]) -> bool:
    return all(
        isinstance(item, int) and not isinstance(item, bool) and 0 <= item < _MAX_TOKEN_ID
        for item in items
    )


def choice_count(payload: dict[str, Any]) -> int:
    return optional_int(payload, "n", 1, _MAX_N) or 1


def stream_flags(payload: dict[str, Any]) -> tuple[bool, bool]:
    """(stream, include_usage) as asked."""
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequestError("'stream' must be a boolean.", param="stream")
    options = payload.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise InvalidRequestError("'stream_options' must be an object.", param="stream_options")
    return bool(stream), bool(options and options.get("include_usage") is True)


async def wait_before_answer(config: MockConfig, sleep_ms: int) -> None:
    delay = config.latency_s + sleep_ms / 1000
    if delay > 0:
        await asyncio.sleep(delay)


async def cut_connection(request: web.Request, *, grace_s: float = 0.0) -> None:
    """Reset the TCP connection (RST, not FIN) once what was written has left the process."""
    transport = request.transport
    if transport is None:
        return
    # Polled: asyncio offers no "write buffer empty" event, and the wait is bounded.
    for _ in range(_FLUSH_POLLS):
        if not transport.get_write_buffer_size():
            break
        await asyncio.sleep(0.005)
    if grace_s > 0:
        await asyncio.sleep(grace_s)
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Linger 0 makes close() send RST: the abrupt failure a crashed upstream produces.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
