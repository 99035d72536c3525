"""The load benchmark end to end in its smoke form, so the harness cannot rot unnoticed.

It runs `python -m bench.harness --smoke` (every lane for about a second, one round, every
available system but the peers) and checks what a reader of the results gets: raw rows, the
markdown summary with its tables, and the plot. Speeds are never asserted, only that each
system answered its requests.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
MISSING_TOOL_EXIT = 3
ALWAYS_MEASURED = ("direct", "nginx", "aiohttp-floor", "sidegate")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "results"
    harness = subprocess.Popen(
        [sys.executable, "-m", "bench.harness", "--smoke", "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, stderr = harness.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        harness.terminate()  # SIGTERM lets the harness stop the servers it started
        _, stderr = harness.communicate(timeout=30)
        pytest.fail(f"the smoke benchmark did not finish in 240 s:\n{stderr[-3000:]}")
    if harness.returncode == MISSING_TOOL_EXIT:
        pytest.skip(stderr.strip())
    assert harness.returncode == 0, stderr[-3000:]
    return out


def rows_of(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


@pytest.mark.timeout(300)
def test_every_lane_measures_the_core_systems(smoke: Path) -> None:
    rows = rows_of(smoke)
    skipped = {r["system"]: r["reason"] for r in rows if r["lane"] == "skip"}
    for system in ALWAYS_MEASURED:
        assert system not in skipped, f"{system} not measured: {skipped.get(system)}"
        measured = {r["lane"] for r in rows if r["system"] == system}
        assert {"chat-c1", "chat-c8", "chat-c64", "stream-c64", "rss"} <= measured, system
        if "mock-upstream" not in skipped:
            assert "paced-c4" in measured, system
    for row in rows:
        if "rps" in row:
            assert row["requests"] > 0 and row["non2xx"] == 0 and row["errors"] == 0, row
            assert row["cpu_us_per_req"] is not None, row
        if row["lane"] in {"chat-c1", "paced-c4"}:
            assert row["core_wait_ms"] is None or row["core_wait_ms"] >= 0, row
        if "ttfb_p50_ms" in row:
            assert row["streams"] > 0 and row["failures"] == 0, row
            if row["system"] != "direct":  # direct took turns with it, stream by stream
                assert row["direct_streams"] > 0 and row["direct_failures"] == 0, row
            if not math.isnan(row["ttfb_net_p50_ms"]):  # the mock's stamps came through
                # Each stream's two legs lie within its TTFB, and so do their medians.
                for leg in ("request_leg_p50_ms", "answer_leg_p50_ms"):
                    assert 0 < row[leg] <= row["ttfb_p50_ms"], row


@pytest.mark.timeout(300)
def test_soak_samples_memory_over_time(smoke: Path) -> None:
    soaks = [r for r in rows_of(smoke) if r["lane"] == "soak"]
    assert {r["system"] for r in soaks} >= {"aiohttp-floor"}
    for row in soaks:
        assert len(row["samples"]) >= 3 and row["requests"] > 0, row


@pytest.mark.timeout(300)
def test_summary_has_the_tables_and_the_plot_is_a_png(smoke: Path) -> None:
    summary = (smoke / "summary.md").read_text()
    for heading in (
        "## Throughput",
        "## Added latency",
        "## Sidegate against its targets",
        "## Soak",
        "## Machine",
    ):
        assert heading in summary
    table = [line for line in summary.splitlines() if line.startswith("| ")]
    for system in ALWAYS_MEASURED:
        assert any(line.startswith(f"| {system} |") for line in table), system
    assert "added p50 @c1" in summary
    # The paced lane's own length is stated: its p99 gap rests on how many events it saw.
    assert "1.0 s per lane (1.5 s in the paced lane)" in summary
    if (os.cpu_count() or 1) > 1:  # the systems' core is measured for stalls, with a figure
        stalls = [line for line in summary.splitlines() if line.startswith("- stalls of cpu 1")]
        assert stalls and "/s over 1 ms" in stalls[0], summary[-1500:]
    after_idle = [line for line in summary.splitlines() if "after an idle pause" in line]
    assert after_idle and "x after 20 ms" in after_idle[0], summary[-1500:]
    assert (smoke / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
