"""The upstream transport on aiohttp's `ClientSession` (egress proxies from the environment).

One session per upstream per process, built with explicit limits and timeouts: no total timeout,
so long streams are never cut; per-attempt limits come in `Timeouts`.

The egress proxy (`HTTPS_PROXY`/`HTTP_PROXY`, `NO_PROXY`, credentials from `.netrc`) is looked up
once per upstream URL rather than by the session on every request (`trust_env`): that lookup
re-reads the environment and `.netrc` each time and cost ~0.65 ms per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from sidegate.errors import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamResetError,
    UpstreamTimeoutError,
)
from sidegate.upstream.headers import ClientHeaders, GatewayHeaders
from sidegate.upstream.transport import SentRequest, Timeouts


class AiohttpResponse:
    __slots__ = ("_pushed", "_read_timeout", "_response", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse, read_timeout: float) -> None:
        self._response = response
        self._read_timeout = read_timeout
        self._pushed: AsyncIterator[bytes] | None = None
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

    async def push_body(
        self, sink: Callable[[bytes], bool], idle: Callable[[], None] | None = None
    ) -> bool:
        # aiohttp's reader has no callback to push from: pull, and keep the place between calls.
        # It does not tell whether the next pull will wait, so `idle` comes before every pull.
        if self._pushed is None:
            self._pushed = self.iter_body()
        while True:
            if idle is not None:
                idle()
            try:
                piece = await anext(self._pushed)
            except StopAsyncIteration:
                return True
            if not sink(piece):
                return False

    def read_now(self) -> bytes | None:
        return None  # aiohttp's reader says nothing without a coroutine

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
        self._proxies: dict[str, tuple[URL | None, aiohttp.BasicAuth | None]] = {}

    def _proxy_for(self, url: str) -> tuple[URL | None, aiohttp.BasicAuth | None]:
        found = self._proxies.get(url)
        if found is None:
            try:
                found = get_env_proxy_for_url(URL(url))
            except LookupError:  # NO_PROXY names the host, or no proxy for its scheme
                found = (None, None)
            # One entry per endpoint and path: a few per configured upstream.
            self._proxies[url] = found
        return found

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._max_connections,
                    limit_per_host=self._max_connections,
                    ttl_dns_cache=300,
                ),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout),
                # Sidegate asks for identity; a body encoded anyway is read decoded, as the
                # client gets it (without the upstream's Content-Encoding).
                auto_decompress=True,
                trust_env=False,  # the proxy comes from `_proxy_for`
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
        proxy, proxy_auth = self._proxy_for(url)
        try:
            async with asyncio.timeout(timeouts.read):
                response = await session.request(
                    method,
                    url,
                    headers=list(headers),
                    data=body,
                    allow_redirects=False,
                    proxy=proxy,
                    proxy_auth=proxy_auth,
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

    def send_now(
        self,
        method: str,
        url: str,
        client_headers: ClientHeaders,
        gateway: GatewayHeaders,
        body: bytes,
        timeouts: Timeouts,
    ) -> SentRequest | None:
        return None  # aiohttp's client sends from a task of its own making

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
