"""Relaying an upstream's SSE stream event by event, reading only what accounting needs.

Events are forwarded as soon as they are complete. The framer notices the `[DONE]` marker and
the usage chunk; when Sidegate asked for usage on its own behalf, that chunk is held back from the
client. Event payloads are kept (not parsed) so the completion can be counted at the end when
the upstream never reports usage.
"""

from __future__ import annotations

import re
from typing import Any, Final

import orjson

from sidegate.tokens import CompletionCounter, Tokenizer

_USAGE_OBJECT: Final = re.compile(rb'"usage"\s*:\s*\{')
_DONE: Final = b"[DONE]"


class SseFramer:
    __slots__ = (
        "_buffer",
        "_delimiter",
        "done",
        "hide_usage",
        "payloads",
        "usage",
    )

    def __init__(self, *, hide_usage: bool) -> None:
        self.hide_usage = hide_usage
        self.usage: dict[str, Any] | None = None
        self.done = False
        self._buffer = b""
        self._delimiter = b"\n\n"
        # Data payloads of content events, unparsed, for counting and assembling at the end.
        self.payloads: list[bytes] = []

    def feed(self, piece: bytes) -> bytes:
        """Complete events from `piece` (plus what was buffered), ready to send to the client."""
        if not self._buffer and b"\r\n" in piece[:512]:
            self._delimiter = b"\r\n\r\n"
        data = self._buffer + piece if self._buffer else piece
        end = data.rfind(self._delimiter)
        if end < 0:
            self._buffer = data
            return b""
        end += len(self._delimiter)
        complete, self._buffer = data[:end], data[end:]
        if not self.hide_usage or _USAGE_OBJECT.search(complete) is None:
            # The common case: nothing to hold back, so the events pass through as one write.
            for event in complete.split(self._delimiter):
                if event:
                    self._note(event)
            return complete
        kept = [e for e in complete.split(self._delimiter) if e and not self._note(e)]
        return self._delimiter.join(kept) + self._delimiter if kept else b""

    def _note(self, event: bytes) -> bool:
        """Record what accounting needs from one event; True when it must be held back."""
        payload = _payload(event)
        if payload is None:
            return False
        if payload == _DONE:
            self.done = True
            return False
        if _USAGE_OBJECT.search(payload) is not None:
            try:
                chunk = orjson.loads(payload)
            except orjson.JSONDecodeError:
                return False
            if isinstance(chunk, dict) and isinstance(chunk.get("usage"), dict):
                self.usage = chunk["usage"]
                if not chunk.get("choices"):
                    return self.hide_usage
        self.payloads.append(payload)
        return False

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
