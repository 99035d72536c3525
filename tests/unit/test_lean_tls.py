"""The lean transport over TLS: verification against a configured CA bundle, SNI, failures."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import trustme
from aiohttp import web
from aiohttp.test_utils import TestServer

from sidegate.errors import UpstreamConnectError, UpstreamTimeoutError
from sidegate.upstream.lean import LeanTransport
from sidegate.upstream.transport import Timeouts

ServerFactory = Callable[..., Awaitable[TestServer]]
TIMEOUTS = Timeouts(connect=5.0, read=10.0)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_bundle(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


async def tls_server(aiohttp_server: ServerFactory, context: ssl.SSLContext) -> TestServer:
    async def hello(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        return web.json_response({"peer": peer[1] if peer else None, "body": await request.text()})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", hello)
    return await aiohttp_server(app, ssl=context)


@pytest.fixture
async def transport(ca_bundle: Path) -> AsyncIterator[LeanTransport]:
    lean = LeanTransport(
        max_connections_per_endpoint=2, idle_expiry_seconds=30.0, ca_bundle=ca_bundle
    )
    yield lean
    await lean.close()


async def test_trusted_certificate_round_trip_and_reuse(
    aiohttp_server: ServerFactory, ca: trustme.CA, transport: LeanTransport
) -> None:
    server = await tls_server(aiohttp_server, server_context(ca, "localhost"))
    url = f"https://localhost:{server.port}/v1/chat/completions"
    peers = []
    for body in (b"one", b"two"):
        response = await transport.send("POST", url, [], body, TIMEOUTS)
        assert response.status == 200
        seen = await response.read()
        assert body in seen
        peers.append(seen.split(b'"peer": ')[1].split(b",")[0])
    assert peers[0] == peers[1]
    assert transport.connections(url) == 1


async def test_sni_names_the_host(
    aiohttp_server: ServerFactory, ca: trustme.CA, transport: LeanTransport
) -> None:
    names: list[str | None] = []
    context = server_context(ca, "localhost")

    def remember(_sock: object, name: str | None, _context: object) -> None:
        names.append(name)

    context.sni_callback = remember  # type: ignore[assignment]
    app = web.Application()

    async def hi(request: web.Request) -> web.Response:
        return web.Response(text="hi")

    app.router.add_post("/x", hi)
    server = await aiohttp_server(app, ssl=context)
    response = await transport.send("POST", f"https://localhost:{server.port}/x", [], b"", TIMEOUTS)
    assert await response.read() == b"hi"
    assert names == ["localhost"]


async def test_untrusted_certificate_is_refused(
    aiohttp_server: ServerFactory, ca: trustme.CA
) -> None:
    server = await tls_server(aiohttp_server, server_context(ca, "localhost"))
    lean = LeanTransport(max_connections_per_endpoint=2, idle_expiry_seconds=30.0)
    try:
        with pytest.raises(UpstreamConnectError, match="TLS handshake.*certificate verify failed"):
            await lean.send(
                "POST", f"https://localhost:{server.port}/v1/chat/completions", [], b"", TIMEOUTS
            )
    finally:
        await lean.close()


async def test_certificate_for_another_name_is_refused(
    aiohttp_server: ServerFactory, ca: trustme.CA, transport: LeanTransport
) -> None:
    server = await tls_server(aiohttp_server, server_context(ca, "upstream.example"))
    with pytest.raises(UpstreamConnectError, match="TLS handshake.*certificate verify failed"):
        await transport.send(
            "POST", f"https://localhost:{server.port}/v1/chat/completions", [], b"", TIMEOUTS
        )


async def test_handshake_that_never_completes_is_a_connect_timeout(
    transport: LeanTransport,
) -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # accept TCP, never speak TLS

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(UpstreamTimeoutError, match="connecting"):
            await transport.send(
                "GET", f"https://127.0.0.1:{port}/", [], b"", Timeouts(connect=0.2, read=10.0)
            )
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
