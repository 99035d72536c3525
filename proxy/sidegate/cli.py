"""`sidegate serve | mock-upstream | check-config | tenants | spend`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from sidegate.settings import ConfigError, Settings, load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sidegate", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="YAML settings file (default: the embedded default)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)

    mock = commands.add_parser("mock-upstream", help="run the deterministic mock model server")
    mock.add_argument("--host", default="127.0.0.1")
    mock.add_argument("--port", type=int, default=9000)
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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "mock-upstream":
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
        return 0
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

        settings = _load(args.config)
        return 1 if settings is None else run_spend(settings, args.since, args.by, args.format)
    settings = _load(args.config, host=args.host, port=args.port, workers=args.workers)
    if settings is None:
        return 1
    from sidegate.limits import workers_problem

    if problem := workers_problem(settings):
        print(f"sidegate: invalid configuration: {problem}", file=sys.stderr)
        return 1
    from sidegate.observability.logging import configure_logging
    from sidegate.server import serve

    configure_logging(settings.telemetry.log_format, settings.telemetry.log_level)
    logging.getLogger("sidegate.server").info(
        "serving",
        extra={"host": settings.server.host, "port": settings.server.port},
    )
    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
