"""Endpoints of each upstream, chosen by least outstanding requests, with passive health.

An endpoint that refuses connections or answers 5xx is marked down for a short cool-down and
skipped while any other endpoint is up; if all are down, the least recently failed is tried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from sidegate.settings import Settings, UpstreamSettings
from sidegate.upstream.aiohttp_transport import AiohttpTransport
from sidegate.upstream.headers import GatewayHeaders
from sidegate.upstream.lean import LeanTransport
from sidegate.upstream.transport import Timeouts, Transport

log = logging.getLogger("sidegate.upstream")

DOWN_COOLDOWN_SECONDS: Final = 5.0

HealthListener = Callable[[str, str, bool], None]


@dataclass(slots=True)
class Endpoint:
    upstream: str
    base_url: str
    outstanding: int = 0
    down_until: float = 0.0
    failures: int = field(default=0)

    def is_up(self, now: float) -> bool:
        return self.down_until <= now


class UpstreamPool:
    def __init__(
        self,
        name: str,
        settings: UpstreamSettings,
        transport: Transport,
        endpoints: tuple[str, ...],
        on_health: HealthListener,
    ) -> None:
        self.name = name
        self.settings = settings
        self.transport = transport
        self.timeouts = Timeouts(
            connect=settings.connect_timeout_seconds, read=settings.timeout_seconds
        )
        self.endpoints = [Endpoint(name, url.rstrip("/")) for url in endpoints]
        self._next = 0
        self._on_health = on_health
        auth = [("Authorization", f"Bearer {settings.api_key}")] if settings.api_key else []
        self.gateway_headers = GatewayHeaders(auth)

    def ordered(self) -> Sequence[Endpoint]:
        """Endpoints to try, best first: healthy by fewest outstanding, rotating among ties.

        A sequence, not a generator: the caller stops at the first endpoint that answers, and
        closing a generator part-way raises GeneratorExit inside it (on every request)."""
        endpoints = self.endpoints
        if len(endpoints) == 1:
            return endpoints  # the common sidecar case: nothing to choose
        now = time.monotonic()
        count = len(endpoints)
        start = self._next
        self._next = (start + 1) % count if count else 0
        rotated = [endpoints[(start + i) % count] for i in range(count)]
        healthy = sorted((e for e in rotated if e.is_up(now)), key=lambda e: e.outstanding)
        down = sorted((e for e in rotated if not e.is_up(now)), key=lambda e: e.down_until)
        return healthy + down

    def mark_failed(self, endpoint: Endpoint) -> None:
        was_up = endpoint.is_up(time.monotonic())
        endpoint.failures += 1
        endpoint.down_until = time.monotonic() + DOWN_COOLDOWN_SECONDS
        if was_up:
            log.warning(
                "upstream endpoint down",
                extra={
                    "event": "upstream_down",
                    "upstream": self.name,
                    "endpoint": endpoint.base_url,
                },
            )
            self._on_health(self.name, endpoint.base_url, False)

    def mark_ok(self, endpoint: Endpoint) -> None:
        if endpoint.failures:
            endpoint.failures = 0
            endpoint.down_until = 0.0
            log.info(
                "upstream endpoint up",
                extra={
                    "event": "upstream_up",
                    "upstream": self.name,
                    "endpoint": endpoint.base_url,
                },
            )
            self._on_health(self.name, endpoint.base_url, True)


def build_transport(upstream: UpstreamSettings) -> Transport:
    if upstream.transport == "aiohttp":
        return AiohttpTransport(
            max_connections=upstream.max_connections,
            connect_timeout=upstream.connect_timeout_seconds,
        )
    return LeanTransport(
        max_connections_per_endpoint=upstream.max_connections, ca_bundle=upstream.ca_bundle
    )


class UpstreamPools(dict[str, UpstreamPool]):
    """Every upstream's pool by name (a dict: the request path looks one up on every request);
    owns the transports and closes them."""

    def __init__(
        self,
        settings: Settings,
        on_health: HealthListener,
        embedded_endpoints: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        for name, upstream in settings.upstreams.items():
            endpoints = upstream.endpoints or embedded_endpoints
            transport = build_transport(upstream)
            self[name] = UpstreamPool(name, upstream, transport, endpoints, on_health)
            for url in endpoints:
                on_health(name, url.rstrip("/"), True)

    async def close(self) -> None:
        for pool in self.values():
            await pool.transport.close()
