"""A bounded pool of keep-alive connections to one endpoint (scheme, host, port).

Every open or opening connection holds a slot; at the bound, callers queue in FIFO order. A
released connection goes straight to the oldest waiter, or to the idle stack (most recently used
first, so the warm connections stay warm and the cold ones expire). A discarded connection hands
its slot to the oldest waiter, who then opens a new one.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque

from sidegate.errors import UpstreamConnectError, UpstreamTimeoutError
from sidegate.upstream.lean_connection import LeanConnection


class EndpointPool:
    """Connections to one endpoint, with at most `limit` open (or opening) at once."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        limit: int,
        idle_expiry: float,
    ) -> None:
        self.loop = loop
        self._host = host
        self._port = port
        self._ssl = ssl_context
        self._name = f"{'https' if ssl_context else 'http'}://{host}:{port}"
        self._limit = limit
        self._idle_expiry = idle_expiry
        self._idle: deque[LeanConnection] = deque()
        self._waiters: deque[asyncio.Future[LeanConnection | None]] = deque()
        self._open: set[LeanConnection] = set()
        self._slots = 0
        self._sweep: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def open_connections(self) -> int:
        return self._slots

    def take_idle(self) -> LeanConnection | None:
        """A live pooled connection, if one is idle (no await: the common, cheap path).

        Expired connections are closed by the sweep, which runs at each one's expiry time.
        """
        idle = self._idle
        while idle:
            conn = idle.pop()
            if conn.usable():
                return conn
            self._drop(conn)
            self._slots -= 1  # no waiter can exist while connections sit idle
        return None

    async def acquire(self, connect_timeout: float) -> LeanConnection:
        """A connection ready for one request: pooled if a live one is idle, else new."""
        if self._closed:
            raise UpstreamConnectError("the upstream transport is closed")
        conn = self.take_idle()
        if conn is not None:
            return conn
        if self._slots < self._limit:
            self._slots += 1
            return await self._open_in_slot(connect_timeout)
        waiter: asyncio.Future[LeanConnection | None] = self.loop.create_future()
        self._waiters.append(waiter)
        try:
            # Waiting for a slot counts as connecting: at the bound, a caller learns within the
            # connect timeout that this endpoint is saturated and can try another.
            async with asyncio.timeout(connect_timeout):
                try:
                    handed = await waiter
                except asyncio.CancelledError:
                    self._give_back(waiter)
                    raise
        except TimeoutError:
            raise UpstreamTimeoutError(
                f"no connection to {self._name} came free within {connect_timeout:g}s"
            ) from None
        if handed is not None:
            return handed
        return await self._open_in_slot(connect_timeout)

    async def replace(self, conn: LeanConnection, connect_timeout: float) -> LeanConnection:
        """Discard `conn` and open a fresh connection in the slot it held."""
        self._drop(conn)
        return await self._open_in_slot(connect_timeout)

    def release(self, conn: LeanConnection) -> None:
        """Take back a connection after a response; pool it only if it can carry another."""
        if self._closed or not conn.usable():
            self._drop(conn)
            self._free_slot()
            return
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        conn.idle_since = self.loop.time()
        self._idle.append(conn)
        if self._sweep is None:
            self._sweep = self.loop.call_at(conn.idle_since + self._idle_expiry, self._run_sweep)

    def close(self) -> None:
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for conn in list(self._open):
            conn.abort()
        self._open.clear()
        self._idle.clear()
        self._slots = 0
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(UpstreamConnectError("the upstream transport is closed"))

    # slots

    async def _open_in_slot(self, connect_timeout: float) -> LeanConnection:
        try:
            return await self._connect(connect_timeout)
        except BaseException:
            self._free_slot()
            raise

    def _free_slot(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to the waiter, who opens a connection
                return
        if self._slots > 0:
            self._slots -= 1

    def _give_back(self, waiter: asyncio.Future[LeanConnection | None]) -> None:
        """A waiter was cancelled: return whatever it had already been handed."""
        if waiter.cancelled():
            try:
                self._waiters.remove(waiter)
            except ValueError:
                pass
            return
        if waiter.exception() is not None:
            return
        handed = waiter.result()
        if handed is None:
            self._free_slot()
        else:
            self.release(handed)

    def _idle_lost(self, conn: LeanConnection) -> None:
        try:
            self._idle.remove(conn)
        except ValueError:
            return  # not idle: on its way to a waiter, who will find it closed
        self._open.discard(conn)
        self._free_slot()

    def _drop(self, conn: LeanConnection) -> None:
        conn.abort()
        self._open.discard(conn)

    def _run_sweep(self) -> None:
        self._sweep = None
        cutoff = self.loop.time() - self._idle_expiry
        keep: deque[LeanConnection] = deque()
        for conn in self._idle:
            if conn.usable() and conn.idle_since > cutoff:
                keep.append(conn)
            else:
                self._drop(conn)
                self._free_slot()
        self._idle = keep
        if keep:
            self._sweep = self.loop.call_at(keep[0].idle_since + self._idle_expiry, self._run_sweep)

    async def _connect(self, connect_timeout: float) -> LeanConnection:
        loop = self.loop
        try:
            async with asyncio.timeout(connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: LeanConnection(loop, self._idle_lost),
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._host if self._ssl is not None else None,
                )
        except TimeoutError:
            raise UpstreamTimeoutError(
                f"connecting to {self._name} took longer than {connect_timeout:g}s"
            ) from None
        except ssl.SSLError as exc:
            raise UpstreamConnectError(f"TLS handshake with {self._name} failed: {exc}") from exc
        except OSError as exc:
            raise UpstreamConnectError(f"cannot connect to {self._name}: {exc}") from exc
        if self._closed:
            conn.abort()
            raise UpstreamConnectError("the upstream transport is closed")
        self._open.add(conn)
        return conn
