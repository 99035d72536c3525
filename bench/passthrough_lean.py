"""The lean floor: a bare aiohttp + uvloop pass-through on Sidegate's `LeanTransport`.

The same relay as passthrough_aiohttp.py with the general-purpose client swapped for the lean one
(asyncio.Protocol + llhttp + keep-alive pool), so the gap between the two floors is the client's
cost. Plain answers are relayed whole, event streams piece by piece, the path passed unchanged.
Usage: passthrough_lean.py --port 8002 --upstream http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

import uvloop
from aiohttp import web

from sidegate.upstream.lean import LeanTransport
from sidegate.upstream.transport import Timeouts

TRANSPORT_KEY = web.AppKey("transport", LeanTransport)
TIMEOUTS = Timeouts(connect=5.0, read=60.0)


def build_app(upstream: str) -> web.Application:
    async def transport_ctx(app: web.Application) -> AsyncIterator[None]:
        transport = LeanTransport(max_connections_per_endpoint=4096, idle_expiry_seconds=60.0)
        app[TRANSPORT_KEY] = transport
        yield
        await transport.close()

    async def relay(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = [("Content-Type", request.headers.get("Content-Type", "application/json"))]
        url = upstream + request.path_qs
        answer = await request.app[TRANSPORT_KEY].send(request.method, url, headers, body, TIMEOUTS)
        try:
            content_type = answer.headers.get("Content-Type", "application/json")
            if not content_type.startswith("text/event-stream"):
                payload = await answer.read()
                return web.Response(
                    status=answer.status,
                    body=payload,
                    content_type=None,
                    headers={"Content-Type": content_type},
                )
            response = web.StreamResponse(
                status=answer.status, headers={"Content-Type": content_type}
            )
            await response.prepare(request)
            async for piece in answer.iter_body():
                await response.write(piece)
            await response.write_eof()
            return response
        finally:
            answer.close()

    app = web.Application()
    app.cleanup_ctx.append(transport_ctx)
    app.router.add_route("*", "/{tail:.*}", relay)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:8000")
    args = parser.parse_args()
    app = build_app(args.upstream.rstrip("/"))
    web.run_app(
        app,
        host=args.host,
        port=args.port,
        loop=uvloop.new_event_loop(),
        access_log=None,
        print=None,
    )


if __name__ == "__main__":
    main()
