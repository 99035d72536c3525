"""Micro-benchmark plumbing: offline tiktoken, and a closing table of ratios.

Each benchmark records its timing under (group, variant); the summary divides the baseline's
time by ours, using the minimum of the rounds (the least disturbed by other processes on a
shared machine) and the median for comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

TIKTOKEN_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "tiktoken"

Timings = dict[str, dict[str, tuple[float, float]]]
TIMINGS = pytest.StashKey[Timings]()

# (group, baseline variant, our variant) rows of the summary.
RATIOS = (
    ("count-1KB", "tiktoken", "sidegate"),
    ("count-10KB", "tiktoken", "sidegate"),
    ("count-100KB", "tiktoken", "sidegate"),
    ("count-100KB-one-char", "tiktoken", "sidegate"),
    ("inspect-4KB", "orjson.loads", "inspect"),
    ("inspect-4KB", "orjson.loads", "inspect-no-count"),
    ("inspect-4KB", "orjson+python-walk", "inspect"),
    ("cache-key-4KB", "sha256+json.dumps", "native"),
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
    write("sidegate micro-benchmark ratios (baseline time / our time; >1 means we are faster)")
    for group, baseline, ours in RATIOS:
        pair = timings.get(group, {})
        if baseline in pair and ours in pair:
            (base_min, base_med), (our_min, our_med) = pair[baseline], pair[ours]
            write(
                f"  {group:<22} {baseline:>20} / {ours:<17} "
                f"min {base_min / our_min:6.2f}x   median {base_med / our_med:6.2f}x   "
                f"(ours {our_min * 1e6:9.2f} us min)"
            )
    for variant, (best, median) in sorted(timings.get("limiter-acquire", {}).items()):
        write(
            f"  limiter-acquire {variant:<28} "
            f"min {best * 1e9:7.0f} ns   median {median * 1e9:7.0f} ns"
        )
