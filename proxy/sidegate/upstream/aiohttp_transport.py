"""The upstream transport on aiohttp's `ClientSession` (egress proxies from the environment).

One session per upstream per process, built with explicit limits and timeouts: no total timeout,
so long streams are never cut; per-attempt limits come in `Timeouts`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence

import aiohttp

from sidegate.errors import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamResetError,
    UpstreamTimeoutError,
)
from sidegate.upstream.transport import Timeouts


class AiohttpResponse:
    __slots__ = ("_read_timeout", "_response", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse, read_timeout: float) -> None:
        self._response = response
        self._read_timeout = read_timeout
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers

    async def iter_body(self) -> AsyncIterator[bytes]:
        content = self._response.content
        try:
            while True:
                async with asyncio.timeout(self._read_timeout):
                    piece = await content.readany()
                if not piece:
                    return
                yield piece
        except TimeoutError:
            raise UpstreamTimeoutError(
                f"The upstream sent nothing for {self._read_timeout:g}s."
            ) from None
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
            raise UpstreamResetError(
                f"The upstream connection was lost mid-body: {type(exc).__name__}",
                after_first_byte=True,
            ) from None

    async def read(self) -> bytes:
        return b"".join([piece async for piece in self.iter_body()])

    def close(self) -> None:
        # release() returns a fully read connection to the pool; close() drops a half-read one.
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class AiohttpTransport:
    def __init__(self, *, max_connections: int, connect_timeout: float) -> None:
        self._max_connections = max_connections
        self._connect_timeout = connect_timeout
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._max_connections,
                    limit_per_host=self._max_connections,
                    ttl_dns_cache=300,
                ),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout),
                auto_decompress=False,
                trust_env=True,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def send(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        timeouts: Timeouts,
    ) -> AiohttpResponse:
        session = self._open()
        try:
            async with asyncio.timeout(timeouts.read):
                response = await session.request(
                    method,
                    url,
                    headers=list(headers),
                    data=body,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(
                        total=None, sock_connect=timeouts.connect, sock_read=None
                    ),
                )
        except TimeoutError:
            raise UpstreamTimeoutError("The upstream did not answer in time.") from None
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamConnectError(f"Cannot connect to the upstream: {exc.strerror}") from None
        except aiohttp.ServerDisconnectedError:
            raise UpstreamResetError("The upstream closed the connection.") from None
        except aiohttp.ClientResponseError as exc:
            raise UpstreamProtocolError(
                f"The upstream sent malformed HTTP: {exc.message}"
            ) from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"Upstream request failed: {type(exc).__name__}") from None
        return AiohttpResponse(response, timeouts.read)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
