"""Server-sent events for a streamed completion: one chunk per token, paced, optionally cut."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from itertools import groupby
from operator import itemgetter
from typing import Any, Final

import orjson
from aiohttp import web

from sidegate.mock.replies import Completion
from sidegate.mock.wire import ARRIVED_NS, DROP_GRACE_S, MockConfig, cut_connection

FINGERPRINT: Final = "fp_sidegate_mock"
_SSE_HEADERS: Final = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
}
_DONE: Final = b"data: [DONE]\n\n"
# Stands in for a token's text while a chunk template is rendered once per choice.
_HOLE: Final = "\x00sidegate-mock-piece\x00"
_HOLE_JSON: Final = orjson.dumps(_HOLE)


class Events:
    """Renders the SSE events of `completion`, in the order OpenAI sends them."""

    __slots__ = ("_base", "_chat", "_completion")

    def __init__(self, completion: Completion) -> None:
        self._completion = completion
        self._chat = completion.kind == "chat"
        self._base: dict[str, Any] = {
            "id": completion.id,
            "object": "chat.completion.chunk" if self._chat else "text_completion",
            "created": completion.created,
            "model": completion.model,
        }
        if self._chat:
            self._base["service_tier"] = "default"
        self._base["system_fingerprint"] = FINGERPRINT

    def opening(self) -> bytes:
        """The chat role chunks (legacy completions have none)."""
        if not self._chat:
            return b""
        delta = {"role": "assistant", "content": "", "refusal": None}
        return b"".join(
            self._event([{"index": index, "delta": delta, "logprobs": None, "finish_reason": None}])
            for index, _ in self._completion.choices
        )

    def token_chunks(self) -> list[tuple[int, bytes]]:
        """(token position, event) for every token of every choice, position by position."""
        templates = [self._template(index) for index, _ in self._completion.choices]
        replies = [reply.pieces for _, reply in self._completion.choices]
        longest = max((len(pieces) for pieces in replies), default=0)
        chunks: list[tuple[int, bytes]] = []
        for position in range(longest):
            for (head, tail), pieces in zip(templates, replies, strict=True):
                if position < len(pieces):
                    chunks.append((position, head + orjson.dumps(pieces[position]) + tail))
        return chunks

    def closing(self) -> bytes:
        """Finish chunks, the usage chunk when asked for, and the terminator."""
        events = [
            self._event([self._choice(index, "", reply.finish_reason, finished=True)])
            for index, reply in self._completion.choices
        ]
        if self._completion.include_usage:
            events.append(self._event([], usage=self._completion.usage()))
        events.append(_DONE)
        return b"".join(events)

    def _choice(self, index: int, text: str, finish: str | None, *, finished: bool = False) -> Any:
        if self._chat:
            delta = {} if finished else {"content": text}
            return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {"text": text, "index": index, "logprobs": None, "finish_reason": finish}

    def _template(self, index: int) -> tuple[bytes, bytes]:
        head, _, tail = self._event([self._choice(index, _HOLE, None)]).rpartition(_HOLE_JSON)
        return head, tail

    def _event(self, choices: list[Any], usage: Any = None) -> bytes:
        chunk = {**self._base, "choices": choices}
        if self._completion.include_usage:
            # OpenAI sends `usage: null` on every chunk but the last once usage is requested.
            chunk["usage"] = usage
        return b"data: " + orjson.dumps(chunk) + b"\n\n"


async def send_stream(
    request: web.Request,
    completion: Completion,
    config: MockConfig,
    drop_after: int | None,
    linger_ms: int = 0,
    gzip: bool = False,
) -> web.StreamResponse:
    events = Events(completion)
    chunks = events.token_chunks()
    if drop_after is not None:
        chunks = chunks[:drop_after]
    closing = b"" if drop_after is not None else events.closing()
    response = web.StreamResponse(headers=_SSE_HEADERS)
    if gzip:
        response.enable_compression(web.ContentCoding.gzip)
    await response.prepare(request)
    write = _stamped_writer(response, request.get(ARRIVED_NS))
    try:
        await _write_events(write, events.opening(), chunks, closing, config.seconds_per_token)
    except ConnectionError:
        # The client left mid-stream: an everyday event for a server, not an error to log.
        return response
    if drop_after is not None:
        await cut_connection(request, grace_s=DROP_GRACE_S)
        return response
    if linger_ms:
        await asyncio.sleep(linger_ms / 1000)
    await response.write_eof()
    return response


def _stamped_writer(
    response: web.StreamResponse, arrived_ns: int | None
) -> Callable[[bytes], Awaitable[None]]:
    """`response.write`, or with `--stamp-events` a write that leads with an SSE comment: when
    the request arrived and when this write left, on the machine's monotonic clock. A client on
    the same machine takes them from its own receive times to see what lay between."""
    if arrived_ns is None:
        return response.write

    async def write(events: bytes) -> None:
        stamp = b": mock-timing arrived_ns=%d sent_ns=%d\n\n" % (arrived_ns, time.monotonic_ns())
        await response.write(stamp + events)

    return write


async def _write_events(
    write: Callable[[bytes], Awaitable[None]],
    opening: bytes,
    chunks: list[tuple[int, bytes]],
    closing: bytes,
    pace: float,
) -> None:
    if pace <= 0:
        # Unpaced, the whole stream goes out in one write: still one SSE event per token, but
        # one syscall, which keeps the mock cheap when it is the upstream of a benchmark.
        await write(opening + b"".join(chunk for _, chunk in chunks) + closing)
        return
    if opening:
        await write(opening)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for position, group in groupby(chunks, key=itemgetter(0)):
        # Token i is due (i + 1) / rate after the start, whatever the writes cost.
        delay = start + (position + 1) * pace - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await write(b"".join(chunk for _, chunk in group))
    if closing:
        await write(closing)
