"""The soak's verdict on memory: a leak, steady or in stairs, is a trend; one step that then
holds is not."""

from __future__ import annotations

import random

from bench.harness.lanes import slope_mb_per_min
from bench.harness.report import growth_per_1k_requests, soak_lines

# One sample every 5 s from 2 to 10 minutes: the fitted part of a 10-minute soak.
TIMES = range(120, 601, 5)


def _includes_zero(samples: list[tuple[float, float]]) -> bool:
    slope = slope_mb_per_min(samples)
    return abs(slope.mb_per_min) <= slope.half_width


def test_one_step_that_then_holds_is_indistinguishable_from_flat() -> None:
    # As measured: a 50 KB step 55 s into the fit, then no change for seven minutes.
    samples = [(float(t), 99.36 if t < 175 else 99.41) for t in TIMES]
    slope = slope_mb_per_min(samples)
    assert slope.lag1 > 0.8
    assert _includes_zero(samples)


def test_a_steady_leak_is_a_trend_even_when_small() -> None:
    pages = random.Random(7)
    # 0.12 MB an hour, with RSS jittering by a page.
    samples = [(float(t), 99.0 + 0.002 * t / 60 + pages.choice((0, 0.004))) for t in TIMES]
    slope = slope_mb_per_min(samples)
    assert not _includes_zero(samples)
    assert abs(slope.mb_per_min - 0.002) < 0.0005


def test_a_leak_in_stairs_is_a_trend() -> None:
    # 50 KB every two minutes: each step holds, but they keep coming.
    samples = [(float(t), 99.0 + 0.05 * ((t - 120) // 120)) for t in TIMES]
    assert not _includes_zero(samples)


def test_flat_memory_with_page_jitter_is_flat() -> None:
    pages = random.Random(3)
    samples = [(float(t), 99.0 + pages.choice((0, 0.004))) for t in TIMES]
    assert _includes_zero(samples)


def test_too_few_samples_give_no_slope() -> None:
    slope = slope_mb_per_min([(0.0, 1.0), (5.0, 1.1), (10.0, 1.2)])
    assert slope.mb_per_min != slope.mb_per_min  # NaN


def test_the_soak_table_states_what_a_leak_could_hide_per_request() -> None:
    # 0.004 ± 0.001 MB/min at 4,500 requests a second: at most 0.005 MB a minute over
    # 270,000 requests, about 19 bytes per 1,000.
    row = {
        "lane": "soak",
        "system": "sidegate",
        "seconds": 600.0,
        "requests": 2_700_000,
        "rss_start_mb": 98.6,
        "rss_end_mb": 98.9,
        "slope_mb_per_min": 0.004,
        "slope_ci95_mb_per_min": 0.001,
    }
    assert abs(growth_per_1k_requests(row) - 0.005 * 2**20 / 270) < 1e-9
    head, _rule, line, *_notes = soak_lines([row])
    cells = dict(
        zip(
            [c.strip() for c in head.strip("|").split("|")],
            [c.strip() for c in line.strip("|").split("|")],
            strict=True,
        )
    )
    assert cells["at most, bytes per 1k requests"] == "19.4"
    assert cells["verdict"].startswith("slow drift")
    # A shrinking process hides nothing.
    assert growth_per_1k_requests({**row, "slope_mb_per_min": -0.01}) == 0.0
