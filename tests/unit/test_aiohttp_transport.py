"""The aiohttp transport's egress proxy: taken from HTTP_PROXY / NO_PROXY, looked up once."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web
from tests.unit.serving import serving

from sidegate.upstream.aiohttp_transport import AiohttpTransport
from sidegate.upstream.transport import Timeouts

TIMEOUTS = Timeouts(connect=5.0, read=10.0)


def upstream_app() -> web.Application:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"via": request.headers.get("Via", "direct")})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    return app


def proxy_app(seen: list[str]) -> web.Application:
    """A forward proxy for plain HTTP: the request line holds the absolute URL."""

    async def forward(request: web.Request) -> web.Response:
        seen.append(str(request.url))
        body = await request.read()
        async with (
            aiohttp.ClientSession() as session,
            session.post(str(request.url), data=body, headers={"Via": "proxy"}) as response,
        ):
            return web.Response(body=await response.read(), content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


async def _ask(transport: AiohttpTransport, url: str) -> bytes:
    response = await transport.send("POST", url, [], b"{}", TIMEOUTS)
    try:
        return await response.read()
    finally:
        response.close()


async def test_requests_go_through_the_proxy_the_environment_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []
    async with serving(upstream_app()) as upstream, serving(proxy_app(seen)) as proxy:
        monkeypatch.setenv("HTTP_PROXY", str(proxy.make_url("")))
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        transport = AiohttpTransport(max_connections=4, connect_timeout=5.0)
        url = str(upstream.make_url("/v1/chat/completions"))
        try:
            assert await _ask(transport, url) == b'{"via": "proxy"}'
            assert await _ask(transport, url) == b'{"via": "proxy"}'
        finally:
            await transport.close()
    assert seen == [url, url]


async def test_no_proxy_hosts_are_reached_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    async with serving(upstream_app()) as upstream, serving(proxy_app(seen)) as proxy:
        monkeypatch.setenv("HTTP_PROXY", str(proxy.make_url("")))
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        transport = AiohttpTransport(max_connections=4, connect_timeout=5.0)
        try:
            url = str(upstream.make_url("/v1/chat/completions"))
            assert await _ask(transport, url) == b'{"via": "direct"}'
        finally:
            await transport.close()
    assert seen == []
