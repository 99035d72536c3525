"""A spend row as the recorder writes one, for the spend log's tests."""

from __future__ import annotations

import time

from sidegate.spend import SpendRow


def row(tenant: str = "acme", cost: float = 0.01, *, at: float | None = None) -> SpendRow:
    return SpendRow(
        at if at is not None else time.time(),
        "req_1",
        tenant,
        "abc123",
        "gpt-4o-mini",
        "gpt-4o-mini",
        "openai",
        10,
        5,
        cost,
        12.5,
        200,
        "miss",
        None,
    )
