"""The writing half of a lean client connection: the answers, and `LeanStream`'s events.

Writes made within one turn of the event loop can leave together (`send_soon`), and a writer
that must stop while the client lags waits in `drain`. The connection
(`sidegate.lean_server.connection.LeanConnection`) sets the attributes declared here; its
reading half (`reading.py`) subclasses this one.
"""

from __future__ import annotations

import asyncio


class ClientWriter:
    """Writes to a client connection's transport; the connection sets the state below."""

    __slots__ = ("_drained", "_outgoing")

    transport: asyncio.Transport | None
    closed: bool
    writing_paused: bool
    _loop: asyncio.AbstractEventLoop
    _outgoing: list[bytes] | None
    _drained: asyncio.Future[None] | None

    def send(self, data: bytes) -> None:
        """Write now (after anything `send_soon` left pending)."""
        transport = self.writable()
        if self._outgoing is not None:
            self._outgoing.append(data)
            data = b"".join(self._outgoing)
            self._outgoing = None
        transport.write(data)

    def send_soon(self, data: bytes) -> None:
        """Write at the end of this turn of the event loop, with whatever else is written in it.

        A stream's head, its events and its last chunk are often all in hand within one turn
        (a short answer relayed whole): one system call instead of three, each of which costs
        more on loopback than the Python around it."""
        transport = self.transport  # `writable()`, written out: every head comes this way
        if self.closed or transport is None or transport.is_closing():
            raise ConnectionResetError("Cannot write to closing transport")
        if self._outgoing is None:
            self._outgoing = [data]
            self._loop.call_soon(self.flush)
        else:
            self._outgoing.append(data)

    def send_joining(self, data: bytes) -> bool:
        """Join a write pending in this turn (a stream's head, say: they leave together at the
        turn's end, with whatever else joins them); write now when nothing is pending. False,
        and nothing written, when the client has gone or is going; else whether more may be
        written before `drain()` (the client reads what it has). One call, as each of a
        stream's events takes it."""
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            return False
        outgoing = self._outgoing
        if outgoing is None:
            transport.write(data)
        else:
            outgoing.append(data)  # the turn's flush is scheduled already
        return not self.writing_paused

    def send_through(self, data: bytes) -> bool:
        """`send_joining`, then what is pending written now rather than at the turn's end: one
        call for a relay whose next piece is a wait away (a stream's head and first event)."""
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            return False
        outgoing = self._outgoing
        if outgoing is not None:
            self._outgoing = None
            outgoing.append(data)
            data = b"".join(outgoing)
        transport.write(data)
        return not self.writing_paused

    def flush(self) -> None:
        outgoing, self._outgoing = self._outgoing, None
        if not outgoing or self.closed or self.transport is None or self.transport.is_closing():
            return
        self.transport.write(outgoing[0] if len(outgoing) == 1 else b"".join(outgoing))

    def writable(self) -> asyncio.Transport:
        if self.closed or self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("Cannot write to closing transport")
        return self.transport

    async def drain(self) -> None:
        if self.closed:
            raise ConnectionResetError("Cannot write to closing transport")
        if not self.writing_paused:
            return
        if self._drained is None:
            self._drained = self._loop.create_future()
        await asyncio.shield(self._drained)
