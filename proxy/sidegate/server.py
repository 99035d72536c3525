"""Running the gateway: one process, or N workers sharing the port (SO_REUSEPORT)."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys

import uvloop

from sidegate.aiohttp_server import run_aiohttp
from sidegate.app import HOT_KINDS, build_app
from sidegate.lean_server.front import run_lean
from sidegate.middleware.door import hot_doors
from sidegate.observability.metrics import use_loop_values
from sidegate.observability.multiprocess import shared_metrics
from sidegate.settings import Settings

log = logging.getLogger("sidegate.server")


def serve(settings: Settings) -> int:
    workers = settings.server.workers
    if workers <= 1:
        _run_one(settings, reuse_port=False)
        return 0
    with shared_metrics(workers):  # before forking: /metrics sums every worker
        return _run_many(settings, workers)


def _run_one(settings: Settings, *, reuse_port: bool) -> None:
    server = settings.server
    use_loop_values()  # before any metric exists; a no-op in a worker of `--workers N`
    if server.http == "lean":
        run_lean(
            build_app(settings),
            lambda app: hot_doors(app, HOT_KINDS),
            loop=uvloop.new_event_loop(),
            host=server.host,
            port=server.port,
            reuse_port=reuse_port,
            max_body_bytes=server.max_body_bytes,
            shutdown_timeout=server.drain_timeout_seconds,
            keepalive_timeout=server.keepalive_timeout_seconds,
        )
        return
    run_aiohttp(
        build_app(settings),
        loop=uvloop.new_event_loop(),
        host=server.host,
        port=server.port,
        reuse_port=reuse_port,
        shutdown_timeout=server.drain_timeout_seconds,
        keepalive_timeout=server.keepalive_timeout_seconds,
    )


def _run_many(settings: Settings, workers: int) -> int:
    """Fork `workers` children that each bind the port with SO_REUSEPORT; the kernel spreads
    connections. The parent forwards SIGTERM/SIGINT and exits when all children have."""
    children: list[int] = []
    parent = os.getpid()
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _die_with_parent(parent)
                _run_one(settings, reuse_port=True)
            except Exception:
                # A child ends in os._exit, which would drop the traceback and the failure.
                log.exception("worker failed", extra={"worker_pid": os.getpid()})
                code = 1
            finally:
                sys.stderr.flush()
                os._exit(code)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            try:
                os.kill(child, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    for child in children:
        _, code = os.waitpid(child, 0)
        if os.waitstatus_to_exitcode(code) not in (0, -signal.SIGTERM):
            status = 1
    sys.stderr.flush()
    return status


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """A worker gets SIGTERM (and drains) when the parent dies, even by SIGKILL or OOM, so no
    orphaned worker keeps the port. Linux only; elsewhere workers follow forwarded signals."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
