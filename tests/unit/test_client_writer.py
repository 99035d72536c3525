"""The lean server's writes to a client: what leaves in which write."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from sidegate.lean_server.writing import ClientWriter


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closing


class _Writer(ClientWriter):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.sent = _Transport()
        self.transport = self.sent  # type: ignore[assignment]
        self.closed = False
        self.writing_paused = False
        self._loop = loop
        self._outgoing = None
        self._drained = None


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_a_write_through_takes_what_waits_for_the_turns_end_along(
    loop: asyncio.AbstractEventLoop,
) -> None:
    writer = _Writer(loop)
    writer.send_soon(b"head;")
    assert writer.send_through(b"event") is True
    assert writer.sent.writes == [b"head;event"]
    loop.run_until_complete(asyncio.sleep(0))  # the turn's flush finds nothing left
    assert writer.sent.writes == [b"head;event"]
    assert writer.send_through(b"next") is True
    assert writer.sent.writes == [b"head;event", b"next"]


def test_a_write_through_to_a_client_that_lags_is_made_and_says_so(
    loop: asyncio.AbstractEventLoop,
) -> None:
    writer = _Writer(loop)
    writer.writing_paused = True
    assert writer.send_through(b"event") is False
    assert writer.sent.writes == [b"event"]


def test_nothing_is_written_through_to_a_client_that_has_gone(
    loop: asyncio.AbstractEventLoop,
) -> None:
    writer = _Writer(loop)
    writer.sent.closing = True
    assert writer.send_through(b"event") is False
    writer.closed = True
    assert writer.send_through(b"event") is False
    assert writer.sent.writes == []
