"""`sidegate serve | mock-upstream | check-config | tenants | spend`."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import socket
import sys
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from sidegate.settings import ConfigError, ServerSettings, Settings, load_settings

# What a failed bind looks like; other OSErrors are not about the address and keep their traceback.
_BIND_ERRNOS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES})


def _server_value(field: str) -> Callable[[str], object]:
    """An argparse type that checks a flag as the file's `server.<field>` is checked."""

    def parse(text: str) -> object:
        try:
            return getattr(ServerSettings.model_validate({field: text}), field)
        except ValidationError as exc:
            raise argparse.ArgumentTypeError(exc.errors()[0]["msg"]) from None

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sidegate", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="YAML settings file (default: the embedded default)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=_server_value("port"))
    serve.add_argument("--workers", type=_server_value("workers"))

    mock = commands.add_parser("mock-upstream", help="run the deterministic mock model server")
    mock.add_argument("--host", default="127.0.0.1")
    mock.add_argument("--port", type=_server_value("port"), default=9000)
    mock.add_argument("--latency-ms", type=float, default=0.0)
    mock.add_argument("--tokens-per-second", type=float, default=0.0)
    mock.add_argument(
        "--stamp-events",
        action="store_true",
        help="precede each streamed write with an SSE comment carrying the mock's clock",
    )

    check = commands.add_parser("check-config", help="validate a settings file and exit")
    check.add_argument("file")

    tenants = commands.add_parser("tenants", help="block, unblock or show a tenant (admin API)")
    tenants.add_argument("action", choices=("block", "unblock", "show"))
    tenants.add_argument("tenant")
    tenants.add_argument("--config", help="YAML settings file (admin.token, server address)")
    tenants.add_argument("--url", help="the gateway to call (default: the config's server)")

    spend = commands.add_parser("spend", help="who spent what, from the spend log")
    spend.add_argument("--config", help="YAML settings file (spend.database_url)")
    spend.add_argument("--since", default="24h", help="window: 90s, 15m, 1h, 7d (default 24h)")
    spend.add_argument("--by", choices=("tenant", "model", "key", "upstream"), default="tenant")
    spend.add_argument("--format", choices=("table", "json"), default="table")
    return parser


def _load(path: str | None, **server: object) -> Settings | None:
    try:
        settings = load_settings(path)
        return settings.with_server(**server) if server else settings
    except ConfigError as exc:
        where = path or "embedded default"
        print(f"sidegate: invalid configuration ({where}): {exc}", file=sys.stderr)
        return None


def _listen_problem(host: str, port: int, *, reuse_port: bool) -> str | None:
    """Why the gateway could not listen on host:port, found by binding as it will (same socket
    options) before anything starts: a forked worker's failed bind never reaches the user, and a
    single process would have opened its spend log and state before its bind failed."""
    if port == 0:
        return None
    try:
        addresses = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        return _cannot_listen(host, port, exc)
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                return _cannot_listen(host, port, exc)
    return None


def _cannot_listen(host: str, port: int, exc: OSError) -> str:
    if isinstance(exc, socket.gaierror) or exc.errno is None:
        reason = exc.strerror or str(exc)
    else:
        # uvloop's own message repeats the address as a tuple; the errno's text reads better.
        reason = os.strerror(exc.errno)
    return f"cannot listen on {host}:{port}: {reason}"


def _is_bind_error(exc: OSError) -> bool:
    return isinstance(exc, socket.gaierror) or exc.errno in _BIND_ERRNOS


def _mock_upstream(args: argparse.Namespace) -> int:
    from sidegate.mock_upstream import run_mock_upstream

    try:
        run_mock_upstream(
            host=args.host,
            port=args.port,
            latency_ms=args.latency_ms,
            tokens_per_second=args.tokens_per_second,
            stamp_events=args.stamp_events,
        )
    except ValueError as exc:
        print(f"sidegate mock-upstream: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if not _is_bind_error(exc):
            raise
        print(
            f"sidegate mock-upstream: {_cannot_listen(args.host, args.port, exc)}", file=sys.stderr
        )
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "mock-upstream":
        return _mock_upstream(args)
    if args.command == "check-config":
        settings = _load(args.file)
        if settings is None:
            return 1
        from sidegate.limits import workers_problem

        if problem := workers_problem(settings):
            print(f"sidegate: invalid configuration ({args.file}): {problem}", file=sys.stderr)
            return 1
        print(f"{args.file}: ok ({len(settings.models)} models, {len(settings.tenants)} tenants)")
        return 0
    if args.command == "tenants":
        from sidegate.limits.admin_client import run_tenants

        settings = _load(args.config)
        return 1 if settings is None else run_tenants(settings, args.action, args.tenant, args.url)
    if args.command == "spend":
        from sidegate.spend.cli import run_spend

        if args.config is None:
            problem = "--config FILE is required (the embedded default keeps no spend log)"
            print(f"sidegate spend: {problem}", file=sys.stderr)
            return 2
        settings = _load(args.config)
        return 1 if settings is None else run_spend(settings, args.since, args.by, args.format)
    return _serve(args)


def _serve(args: argparse.Namespace) -> int:
    settings = _load(args.config, host=args.host, port=args.port, workers=args.workers)
    if settings is None:
        return 1
    from sidegate.limits import workers_problem

    if problem := workers_problem(settings):
        print(f"sidegate: invalid configuration: {problem}", file=sys.stderr)
        return 1
    host, port = settings.server.host, settings.server.port
    if problem := _listen_problem(host, port, reuse_port=settings.server.workers > 1):
        print(f"sidegate: {problem}", file=sys.stderr)
        return 1
    from sidegate.observability.logging import configure_logging
    from sidegate.server import serve

    configure_logging(settings.telemetry.log_format, settings.telemetry.log_level)
    logging.getLogger("sidegate.server").info("serving", extra={"host": host, "port": port})
    try:
        return serve(settings)
    except OSError as exc:
        if not _is_bind_error(exc):  # taken between the check above and the bind
            raise
        print(f"sidegate: {_cannot_listen(host, port, exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
