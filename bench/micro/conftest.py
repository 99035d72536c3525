"""Micro-benchmark plumbing: offline tiktoken, and a closing summary of ratios.

Each benchmark records its timing under (group, variant); the summary compares ours with the
baseline using the minimum of the rounds (the least disturbed by other processes on a shared
machine), with the median in brackets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

TIKTOKEN_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "tiktoken"

Timings = dict[str, dict[str, tuple[float, float]]]
TIMINGS = pytest.StashKey[Timings]()

# (group, baseline variant, our variant) rows of the summary, as speed-ups (baseline / ours).
SPEEDUPS = (
    ("count-1KB", "tiktoken", "sidegate"),
    ("count-10KB", "tiktoken", "sidegate"),
    ("count-100KB", "tiktoken", "sidegate"),
    ("count-100KB-one-char", "tiktoken", "sidegate"),
    ("inspect-4KB", "orjson+python-walk", "inspect"),
    ("cache-key-4KB", "sha256+json.dumps", "native"),
)
# Rows stated as costs (ours / baseline): the inspection target is "at most 1.5x orjson.loads".
COSTS = (
    ("inspect-4KB", "inspect-no-count", "orjson.loads"),
    ("inspect-4KB", "inspect", "orjson.loads"),
    ("inspect-4KB", "inspect-first-sight", "orjson.loads"),
)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[TIMINGS] = {}


@pytest.fixture(scope="session", autouse=True)
def offline_tiktoken() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TIKTOKEN_CACHE_DIR", str(TIKTOKEN_DATA))
        yield


Measure = Callable[..., Any]


@pytest.fixture
def measure(benchmark: Any, request: pytest.FixtureRequest) -> Measure:
    """`measure(group, variant, fn, *args)`: benchmark `fn(*args)` and remember its timing."""

    def run(group: str, variant: str, fn: Callable[..., Any], *args: Any) -> Any:
        benchmark.group = group
        benchmark.extra_info["variant"] = variant
        result = benchmark(fn, *args)
        stats = benchmark.stats.stats
        request.config.stash[TIMINGS].setdefault(group, {})[variant] = (stats.min, stats.median)
        return result

    return run


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    timings = config.stash.get(TIMINGS, {})
    if not timings:
        return
    write = terminalreporter.write_line
    write("")
    write("sidegate micro-benchmarks (min of rounds; median in brackets)")
    for group, baseline, ours in SPEEDUPS:
        pair = timings.get(group, {})
        if baseline in pair and ours in pair:
            (base_min, base_med), (our_min, our_med) = pair[baseline], pair[ours]
            write(
                f"  {group:<21} {ours} is {base_min / our_min:5.2f}x faster than {baseline} "
                f"[{base_med / our_med:5.2f}x]  (ours {our_min * 1e6:.2f} us)"
            )
    for group, ours, baseline in COSTS:
        pair = timings.get(group, {})
        if baseline in pair and ours in pair:
            (base_min, base_med), (our_min, our_med) = pair[baseline], pair[ours]
            write(
                f"  {group:<21} {ours} costs {our_min / base_min:5.2f}x {baseline} "
                f"[{our_med / base_med:5.2f}x]  (ours {our_min * 1e6:.2f} us)"
            )
    for variant, (best, median) in sorted(timings.get("spend-record", {}).items()):
        write(f"  spend-record          {variant} {best * 1e9:.0f} ns [{median * 1e9:.0f} ns]")
    for variant, (best, median) in sorted(timings.get("limiter-acquire", {}).items()):
        write(f"  limiter-acquire       {variant} {best * 1e9:.0f} ns [{median * 1e9:.0f} ns]")
