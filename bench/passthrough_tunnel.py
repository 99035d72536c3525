"""The tunnel floor: the least a Python relay can do, bytes passed through unread.

Each client connection gets its own upstream connection, and whatever either side sends is
written to the other as it comes (uvloop, `asyncio.Protocol`, flow control both ways). No
HTTP is parsed, so it is no gateway and no throughput reference; it is the latency floor of
Python on uvloop: what waking the interpreter and crossing it twice costs, with no request
handling in between. A relay's added latency beyond this one is the work its own code does.
Usage: passthrough_tunnel.py --port 8003 --upstream http://127.0.0.1:8000
"""

from __future__ import annotations

import asyncio
from typing import cast

import relay_server


class _Side(asyncio.Protocol):
    """One end of the tunnel; `peer` is the other end once both are connected."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.early: list[bytes] = []  # what came before the peer was connected

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None or peer.transport is None:
            self.early.append(data)
        else:
            peer.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    # The peer cannot take more: stop reading what would be written to it.
    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def join(self, peer: _Side) -> None:
        self.peer, peer.peer = peer, self
        for side in (self, peer):
            for data in side.early:
                side.data_received(data)
            side.early.clear()


class _Client(_Side):
    def __init__(self, host: str, port: int) -> None:
        super().__init__()
        self._host, self._port = host, port

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        upstream = await relay_server.connect_upstream(
            self.transport, _Side, self._host, self._port
        )
        if upstream is not None:
            self.join(upstream)


if __name__ == "__main__":
    relay_server.run(__doc__, _Client)
