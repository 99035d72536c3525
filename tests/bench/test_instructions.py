"""`python -m bench.harness.instructions`: variants parse, overrides merge, and a short run under
callgrind reports a count for Sidegate and for a floor (skipped where valgrind is missing)."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from bench.harness.instructions import parse_variant
from bench.harness.systems import merged

ROOT = Path(__file__).resolve().parents[2]


def test_overrides_merge_into_nested_config() -> None:
    base = {"spend": {"enabled": True, "batch_size": 500}, "auth": {"mode": "keys"}}
    assert merged(base, {"spend": {"enabled": False}, "cache": {"enabled": True}}) == {
        "spend": {"enabled": False, "batch_size": 500},
        "auth": {"mode": "keys"},
        "cache": {"enabled": True},
    }
    assert base["spend"] == {"enabled": True, "batch_size": 500}  # untouched


def test_variants_are_overrides_or_reference_systems() -> None:
    assert parse_variant('quiet={"telemetry": {"log_level": "error"}}') == (
        "quiet",
        {"telemetry": {"log_level": "error"}},
    )
    assert parse_variant("floor=aiohttp-floor") == ("floor", "aiohttp-floor")
    proxy = ROOT / "proxy"
    assert parse_variant(f"before=source:{proxy}") == ("before", proxy)
    for bad in ("no-equals", "x=[1]", "x=not-a-system", f"x=source:{ROOT}"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_variant(bad)


@pytest.mark.skipif(
    shutil.which("valgrind") is None or shutil.which("wrk") is None, reason="needs valgrind, wrk"
)
def test_a_short_run_counts_instructions_per_request() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.harness.instructions",
            "--seconds",
            "2",
            "--connections",
            "4",
            "--variant",
            "defaults={}",
            "--variant",
            "floor=aiohttp-floor",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    counts = dict(re.findall(r"^(\S+)\s+([\d.]+) k instructions/request", result.stdout, re.M))
    assert set(counts) == {"defaults", "floor"}
    assert all(float(count) > 10 for count in counts.values())
