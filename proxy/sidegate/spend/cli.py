"""`sidegate spend --config FILE --since 1h --by tenant|model`: the runbook's "who is burning
money" answer, as a table (largest spender first) or JSON."""

from __future__ import annotations

import sys
from dataclasses import asdict

import orjson

from sidegate.settings import Settings
from sidegate.spend.report import parse_since, summarize
from sidegate.spend.rows import SpendStoreError


def run_spend(settings: Settings, since: str, by: str, output: str) -> int:
    try:
        seconds = parse_since(since)
        rows = summarize(settings.spend.database_url, seconds, by)
    except (ValueError, SpendStoreError) as exc:
        print(f"sidegate spend: {exc}", file=sys.stderr)
        return 1
    if output == "json":
        print(orjson.dumps([asdict(r) for r in rows]).decode())
        return 0
    header = (by, "requests", "errors", "input_tokens", "output_tokens", "cost_usd")
    table = [header] + [
        (
            r.group,
            str(r.requests),
            str(r.errors),
            str(r.input_tokens),
            str(r.output_tokens),
            f"{r.cost_usd:.6f}",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        print("  ".join(cells).rstrip())
    total = sum(r.cost_usd for r in rows)
    print(f"total cost_usd {total:.6f} over {sum(r.requests for r in rows)} requests ({since})")
    return 0
