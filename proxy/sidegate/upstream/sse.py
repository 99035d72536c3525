"""Relaying an upstream's SSE stream event by event, reading only what accounting needs.

Events are forwarded as soon as they are complete. The framer notices the `[DONE]` marker and
the usage chunk; when Sidegate asked for usage on its own behalf, that chunk is held back from the
client. Only text that contains one of those two is split into events: the rest passes through
with one native call per piece (`_native.sse_complete`: where its complete events end, whether
a `[DONE]` line is among them, where a usage object starts), however many events it holds. The
forwarded bytes are kept, and split into event payloads only when they are needed (counting a
completion whose upstream reported no usage, or storing the answer in the cache).
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from sidegate._native import sse_complete, sse_usage_at
from sidegate.tokens import CompletionCounter, Tokenizer

_DONE: Final = b"[DONE]"
_LF_END: Final = b"\n\n"
_CRLF_END: Final = b"\r\n\r\n"


class SseFramer:
    __slots__ = (
        "_buffer",
        "_crlf",
        "_relayed",
        "done",
        "hide_usage",
        "usage",
    )

    def __init__(self, *, hide_usage: bool) -> None:
        self.hide_usage = hide_usage
        self.usage: dict[str, Any] | None = None
        self.done = False
        self._buffer = b""
        self._crlf: bool | None = None  # how events end (CRLF CRLF or LF LF): known once one has
        # Complete events as they came, for `payloads` (held-back usage events included).
        self._relayed: list[bytes] = []

    def feed(self, piece: bytes) -> bytes:
        """Complete events from `piece` (plus what was buffered), ready to send to the client."""
        buffer = self._buffer
        data = buffer + piece if buffer else piece
        # Until an event has ended, a CR in the stream means its lines end in CRLF.
        found = sse_complete(data, self._crlf, self.done)
        if found is None:
            self._buffer = data
            return b""
        end, self._crlf, self.done, usage = found
        if end == len(data):  # most pieces end where an event does: no copies
            complete = data
            self._buffer = b""
        else:
            complete, self._buffer = data[:end], data[end:]
        self._relayed.append(complete)
        if usage is None:
            # The common case: nothing to read or hold back; the events pass as one write.
            return complete
        return self._without_held_back(complete, usage)

    @property
    def _delimiter(self) -> bytes:
        """How events end (LF LF until one has ended)."""
        return _CRLF_END if self._crlf else _LF_END

    def _without_held_back(self, complete: bytes, usage: tuple[int, int] | None) -> bytes:
        """`complete` less the usage events to hold back; only events with usage are read."""
        delimiter = self._delimiter  # known once anything is complete
        kept: list[bytes] = []
        position = 0
        while usage is not None:
            start = complete.rfind(delimiter, 0, usage[0])
            start = 0 if start < 0 else start + len(delimiter)
            end = complete.find(delimiter, usage[1])  # `complete` ends with one
            if self._holds_back(complete[start:end]):
                kept.append(complete[position:start])
                position = end + len(delimiter)
            usage = sse_usage_at(complete, end)
        kept.append(complete[position:])
        return b"".join(kept)

    def _events(self, complete: bytes) -> list[bytes]:
        return [event for event in complete.split(self._delimiter) if event]

    def _holds_back(self, event: bytes) -> bool:
        """Record the usage an event carries; True when the event must not reach the client."""
        chunk = _usage_chunk(_payload(event))
        if chunk is None:
            return False
        self.usage = chunk["usage"]
        return self.hide_usage and not chunk.get("choices")

    @property
    def payloads(self) -> list[bytes]:
        """Data payloads of the content events relayed so far (not `[DONE]`, not a chunk that
        carries only usage), unparsed."""
        payloads = []
        for complete in self._relayed:
            for event in self._events(complete):
                payload = _payload(event)
                if payload is None or payload == _DONE:
                    continue
                chunk = _usage_chunk(payload)
                if chunk is None or chunk.get("choices"):
                    payloads.append(payload)
        return payloads

    def count_completion(self, tokenizer: Tokenizer) -> int:
        """Completion tokens from the content deltas seen (when no usage was reported)."""
        counter = CompletionCounter(tokenizer)
        for payload in self.payloads:
            try:
                chunk = orjson.loads(payload)
            except orjson.JSONDecodeError:
                continue
            for choice in chunk.get("choices") or () if isinstance(chunk, dict) else ():
                delta = choice.get("delta") or {}
                text = delta.get("content") if isinstance(delta, dict) else None
                if text is None:
                    text = choice.get("text")
                if isinstance(text, str):
                    counter.add(text)
        return counter.count()


def _usage_chunk(payload: bytes | None) -> dict[str, Any] | None:
    """The parsed chunk, when `payload` is a chunk with a `usage` object."""
    if payload is None or sse_usage_at(payload) is None:
        return None
    try:
        chunk = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if isinstance(chunk, dict) and isinstance(chunk.get("usage"), dict):
        return chunk
    return None


def _payload(event: bytes) -> bytes | None:
    """The `data:` field of one event (joined if multi-line), or None for comments/others."""
    data = [line[5:].lstrip(b" ") for line in event.splitlines() if line.startswith(b"data:")]
    if not data:
        return None
    return data[0] if len(data) == 1 else b"\n".join(data)


def error_event(message: str, code: str) -> bytes:
    """The SSE event that ends a stream the upstream cut, so the client never sees a clean end."""
    body = {"error": {"message": message, "type": "api_error", "param": None, "code": code}}
    return b"data: " + orjson.dumps(body) + b"\n\n"
