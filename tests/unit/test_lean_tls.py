"""The lean transport over TLS: verification against a configured CA bundle, SNI, failures."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trustme
from aiohttp import web
from tests.unit.both_loops import on_both_loops
from tests.unit.serving import serving

from sidegate.errors import UpstreamConnectError, UpstreamTimeoutError
from sidegate.upstream.lean import LeanTransport
from sidegate.upstream.transport import Timeouts

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


def hello_app() -> web.Application:
    async def hello(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        return web.json_response({"peer": peer[1] if peer else None, "body": await request.text()})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", hello)
    return app


@asynccontextmanager
async def lean(ca_bundle: Path | None) -> AsyncIterator[LeanTransport]:
    transport = LeanTransport(
        max_connections_per_endpoint=2, idle_expiry_seconds=30.0, ca_bundle=ca_bundle
    )
    try:
        yield transport
    finally:
        await transport.close()


@on_both_loops
async def test_trusted_certificate_round_trip_and_reuse(ca: trustme.CA, ca_bundle: Path) -> None:
    context = server_context(ca, "localhost")
    async with serving(hello_app(), context) as server, lean(ca_bundle) as transport:
        url = f"https://localhost:{server.port}/v1/chat/completions"
        peers = []
        for body in (b"one", b"two"):
            response = await transport.send("POST", url, [], body, TIMEOUTS)
            assert response.status == 200
            seen = json.loads(await response.read())
            assert seen["body"] == body.decode()
            peers.append(seen["peer"])
        assert peers[0] == peers[1]
        assert transport.connections(url) == 1


@on_both_loops
async def test_sni_names_the_host(ca: trustme.CA, ca_bundle: Path) -> None:
    names: list[str | None] = []
    context = server_context(ca, "localhost")

    def remember(_sock: object, name: str | None, _context: object) -> None:
        names.append(name)

    context.sni_callback = remember  # type: ignore[assignment]
    async with serving(hello_app(), context) as server, lean(ca_bundle) as transport:
        url = f"https://localhost:{server.port}/v1/chat/completions"
        response = await transport.send("POST", url, [], b"hi", TIMEOUTS)
        assert json.loads(await response.read())["body"] == "hi"
        assert names == ["localhost"]


@on_both_loops
async def test_large_body_with_backpressure_over_tls(ca: trustme.CA, ca_bundle: Path) -> None:
    blob = bytes(range(256)) * 16384  # 4 MiB

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=blob)

    app = web.Application()
    app.router.add_get("/big", big)
    context = server_context(ca, "localhost")
    async with serving(app, context) as server, lean(ca_bundle) as transport:
        url = f"https://localhost:{server.port}/big"
        response = await transport.send("GET", url, [], b"", TIMEOUTS)
        pieces = response.iter_body()
        first = await anext(pieces)
        await asyncio.sleep(0.05)  # lag: the socket is paused meanwhile
        rest = b"".join([piece async for piece in pieces])
        assert first + rest == blob
        again = await transport.send("GET", url, [], b"", TIMEOUTS)
        assert await again.read() == blob
        assert transport.connections(url) == 1


@on_both_loops
async def test_untrusted_certificate_is_refused(ca: trustme.CA) -> None:
    context = server_context(ca, "localhost")
    async with serving(hello_app(), context) as server, lean(None) as transport:
        url = f"https://localhost:{server.port}/v1/chat/completions"
        with pytest.raises(
            UpstreamConnectError, match=r"certificate verify failed: unable to get local issuer"
        ):
            await transport.send("POST", url, [], b"", TIMEOUTS)
        assert transport.connections(url) == 0


@on_both_loops
async def test_certificate_for_another_name_is_refused(ca: trustme.CA, ca_bundle: Path) -> None:
    context = server_context(ca, "upstream.example")
    async with serving(hello_app(), context) as server, lean(ca_bundle) as transport:
        url = f"https://localhost:{server.port}/v1/chat/completions"
        with pytest.raises(
            UpstreamConnectError, match=r"certificate verify failed: (Hostname|IP address) mismatch"
        ):
            await transport.send("POST", url, [], b"", TIMEOUTS)


@on_both_loops
async def test_handshake_that_never_completes_is_a_connect_timeout(ca_bundle: Path) -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # accept TCP, never speak TLS

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with lean(ca_bundle) as transport:
            with pytest.raises(UpstreamTimeoutError, match="connecting"):
                await transport.send(
                    "GET", f"https://127.0.0.1:{port}/", [], b"", Timeouts(connect=0.2, read=10.0)
                )
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
