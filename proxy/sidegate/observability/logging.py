"""Log output: one JSON object per line (or plain text), configured once by the CLI."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from sidegate._native import AccessLines

# Attributes every LogRecord has; anything else was passed in `extra=` and is a field.
_STANDARD: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)


def _timestamp(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")


# Bytes of access lines held for the end of the event-loop turn before they are written at once.
_MAX_PENDING: Final = 65536


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class JsonLineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The JSON handler, plus `access_lines`: the access log's one line per request, written
    natively (the line `JsonFormatter` would write for the same fields) and without a
    `LogRecord`, whose creation, filtering and formatting cost more than the request's own
    accounting. Its lines go out in one write(2) per event-loop turn."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(JsonFormatter())
        self._flushing: asyncio.Handle | None = None
        self.access_lines = AccessLines(_MAX_PENDING)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0

    def access_lines_added(self) -> None:
        """What `access_lines.add` asked for: the first line of a loop turn schedules one
        write at the turn's end (stderr is unbuffered: each line would be a system call of
        its own); a full buffer, or a line written with no loop running, goes out now."""
        with self.lock:  # type: ignore[union-attr]
            loop = self._running_loop()
            if loop is None or len(self.access_lines) >= _MAX_PENDING:
                self.flush()
            elif self._flushing is None:
                self._flushing = loop.call_soon(self.flush)

    def _running_loop(self) -> asyncio.AbstractEventLoop | None:
        """This thread's running loop; remembered, since on Python 3.11 each
        `get_running_loop()` makes a getpid() system call."""
        loop, thread = self._loop, threading.get_ident()
        if loop is not None and self._loop_thread == thread and loop.is_running():
            return loop
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        self._loop, self._loop_thread = loop, thread
        return loop

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.access_lines):  # lines written before this record go out before it
            self.flush()
        super().emit(record)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if self._flushing is not None:
                self._flushing.cancel()
                self._flushing = None
            if len(self.access_lines):
                data = self.access_lines.take()
                try:
                    self._write_all(data)
                except Exception:
                    self.handleError(logging.makeLogRecord({"msg": "access log write"}))
            super().flush()

    def _write_all(self, data: bytes) -> None:
        stream = self.stream
        binary = getattr(stream, "buffer", None)
        if binary is None:
            stream.write(data.decode())
            return
        stream.flush()  # whatever the text layer holds goes first
        view = memoryview(data)
        while view:
            written = binary.write(view)
            view = view[written or 0 :]
        binary.flush()


def fast_json_handler(logger: logging.Logger) -> JsonLineHandler | None:
    """The `JsonLineHandler` that alone would format `logger`'s records, else None (another
    handler, a filter or propagation beyond `sidegate`: then the logging module must run)."""
    if logger.handlers or logger.filters or not logger.propagate:
        return None
    parent = logger.parent
    if parent is None or parent.filters or parent.propagate or len(parent.handlers) != 1:
        return None
    handler = parent.handlers[0]
    if type(handler) is not JsonLineHandler or handler.filters:
        return None
    return handler


def configure_logging(log_format: str, level: str) -> None:
    handler: logging.Handler
    if log_format == "json":
        handler = JsonLineHandler()
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("sidegate")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    # The span exporter reports a collector it cannot reach, and aiohttp's server what it
    # could not handle; with no handler of their own, Python would print those lines (and
    # their tracebacks) as plain text.
    for name in ("opentelemetry", "aiohttp"):
        library = logging.getLogger(name)
        library.handlers[:] = [handler]
        library.setLevel(max(logging.WARNING, root.level))
        library.propagate = False
