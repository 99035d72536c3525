"""`sidegate serve | mock-upstream | check-config | spend`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


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

    check = commands.add_parser("check-config", help="validate a settings file and exit")
    check.add_argument("file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "mock-upstream":
        from sidegate.mock_upstream import run_mock_upstream

        run_mock_upstream(
            host=args.host,
            port=args.port,
            latency_ms=args.latency_ms,
            tokens_per_second=args.tokens_per_second,
        )
        return 0
    print(f"sidegate: {args.command} is not available yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
