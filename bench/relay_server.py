"""The command line and server of the `asyncio.Protocol` relays in bench/ (the tunnel floor and
the compact path): `--port`, `--upstream`, and a uvloop server making one protocol per client.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

import uvloop

# Given the upstream's host and port, makes the protocol for one client connection.
ClientFactory = Callable[[str, int], asyncio.Protocol]
UpstreamSide = TypeVar("UpstreamSide", bound=asyncio.Protocol)


async def connect_upstream(
    client: asyncio.Transport | None, make: Callable[[], UpstreamSide], host: str, port: int
) -> UpstreamSide | None:
    """A client connection's own upstream connection; None (and the client's connection
    closed) when it cannot be opened, or when the client left while it was opening."""
    try:
        upstream, side = await asyncio.get_running_loop().create_connection(make, host, port)
    except OSError:
        if client is not None:
            client.close()
        return None
    if client is None or client.is_closing():
        upstream.close()
        return None
    return side


async def _serve(host: str, port: int, make: Callable[[], asyncio.Protocol]) -> None:
    server = await asyncio.get_running_loop().create_server(make, host, port)
    await server.serve_forever()


def run(description: str | None, client: ClientFactory) -> None:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:8000")
    args = parser.parse_args()
    upstream = urlsplit(args.upstream)
    host, port = upstream.hostname, upstream.port
    if host is None or port is None:
        parser.error("--upstream needs a host and a port")
    uvloop.run(_serve(args.host, args.port, lambda: client(host, port)))
