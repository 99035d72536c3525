"""One measurement of one system in one lane, returned as a JSON-ready row.

CPU cost comes from /proc (utime + stime of the system's process tree) read around each run and
divided by the requests that completed with 2xx: it is steadier than req/s on a shared machine.
"""

from __future__ import annotations

import itertools
import math
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import paced, procs, wrk
from bench.harness.systems import Kind, Running, probe

Row = dict[str, Any]
SOAK_WARMUP_SHARE = 0.2
# Row keys of the direct streams that took turns with a system's in the paced lane.
PAIRED = "direct_"


@dataclass(frozen=True)
class Lane:
    name: str
    kind: Kind
    concurrency: int
    throughput: bool = False

    @property
    def paced(self) -> bool:
        return self.kind is Kind.PACED


def lanes_for(concurrencies: list[int], stream_concurrency: int, paced_clients: int) -> list[Lane]:
    top = max(concurrencies)
    lanes = [Lane(f"chat-c{c}", Kind.CHAT, c, throughput=c == top) for c in concurrencies]
    lanes.append(Lane(f"stream-c{stream_concurrency}", Kind.STREAM, stream_concurrency, True))
    lanes.append(Lane(f"paced-c{paced_clients}", Kind.PACED, paced_clients))
    return lanes


def percentile(values: list[float], share: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))
    return ordered[index]


def _paced_figures(result: paced.PacedResult) -> Row:
    return {
        "streams": result.streams,
        "failures": result.failures,
        "ttfb_p50_ms": percentile(result.ttfb_ms, 0.5),
        "ttfb_p99_ms": percentile(result.ttfb_ms, 0.99),
        "gap_p50_ms": percentile(result.gaps_ms, 0.5),
        "gap_p99_ms": percentile(result.gaps_ms, 0.99),
        "gaps": len(result.gaps_ms),
        "ttfb_net_p50_ms": percentile(result.net_ttfb_ms, 0.5),
        "gap_stretch_p99_ms": percentile(result.stretches_ms, 0.99),
        "stretches": len(result.stretches_ms),
        "request_leg_p50_ms": percentile(result.request_legs_ms, 0.5),
        "answer_leg_p50_ms": percentile(result.answer_legs_ms, 0.5),
    }


def measure(
    system: Running, lane: Lane, seconds: float, workdir: Path, reference: Running | None = None
) -> Row:
    """One system in one lane. In the paced lane a `reference` (direct) takes turns with the
    system stream by stream, and its figures go into the same row under `PAIRED` keys."""
    pids = system.pids()
    cpu_before = procs.cpu_seconds(pids)
    wait_before = procs.core_wait_seconds(pids)
    row: Row = {
        "lane": lane.name,
        "kind": str(lane.kind),
        "system": system.name,
        "concurrency": lane.concurrency,
    }
    if lane.paced and reference is not None and reference is not system:
        result, alongside = paced.run_paired(
            system.target(lane.kind), reference.target(lane.kind), lane.concurrency, seconds
        )
        done = result.streams
        row.update(_paced_figures(result))
        row.update({f"{PAIRED}{key}": value for key, value in _paced_figures(alongside).items()})
    elif lane.paced:
        result = paced.run(system.target(lane.kind), lane.concurrency, seconds)
        done = result.streams
        row.update(_paced_figures(result))
    else:
        outcome = wrk.run(system.target(lane.kind), lane.concurrency, seconds, workdir)
        done = outcome.ok_requests
        row.update(
            requests=outcome.requests,
            non2xx=outcome.non2xx,
            errors=outcome.errors,
            seconds=round(outcome.seconds, 3),
            rps=round(outcome.rps, 1),
            **{f"{key}_ms": value / 1000 for key, value in outcome.latency_us.items()},
        )
    cpu = procs.cpu_seconds(pids) - cpu_before
    row["cpu_s"] = round(cpu, 3)
    row["cpu_us_per_req"] = round(cpu * 1e6 / done, 1) if done else None
    waited = procs.core_wait_seconds(pids) - wait_before
    row["core_wait_ms"] = None if math.isnan(waited) else round(waited * 1e3, 3)
    return row


def warm_up(system: Running, seconds: float, workdir: Path, with_paced: bool) -> None:
    """First requests pay for imports, pools and caches; keep them out of the figures."""
    for kind in (Kind.CHAT, Kind.STREAM):
        if seconds >= 1:
            wrk.run(system.target(kind), 16, seconds, workdir)
        else:
            # wrk runs whole seconds; a smoke run only needs the first requests out of the way.
            for _ in range(20):
                probe(system.target(kind), timeout=10)
    if with_paced:
        paced.run(system.target(Kind.PACED), 2, min(seconds, 1.0))


@dataclass(frozen=True)
class Slope:
    """RSS trend in MB/min, the half-width of its ~95% interval, and what widened it."""

    mb_per_min: float
    half_width: float
    lag1: float  # autocorrelation of the fit's residuals
    effective_samples: float


def slope_mb_per_min(samples: list[tuple[float, float]]) -> Slope:
    """Least-squares slope of RSS over time, its interval widened for autocorrelated residuals.

    RSS moves in steps (an allocator takes a new arena, then holds it), so successive residuals
    of a straight-line fit are far from independent, and the plain interval is far too narrow:
    a single step after warm-up reads as a trend. The interval uses the effective sample size
    n(1 - r1)/(1 + r1), r1 the residuals' lag-1 autocorrelation (the usual correction for
    trends in autocorrelated series; Santer et al., 2000). A steady leak leaves residuals that
    scatter around the line, r1 stays small, and the interval stays narrow.
    """
    nothing = Slope(math.nan, math.nan, math.nan, math.nan)
    if len(samples) < 4:
        return nothing
    xs = [t / 60 for t, _ in samples]
    ys = [rss for _, rss in samples]
    x_mean, y_mean = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - x_mean) ** 2 for x in xs)
    if sxx == 0:
        return nothing
    slope = sum((x - x_mean) * (y - y_mean) for x, y in zip(xs, ys, strict=True)) / sxx
    residuals = [y - (y_mean + slope * (x - x_mean)) for x, y in zip(xs, ys, strict=True)]
    squares = sum(r * r for r in residuals)
    lag1 = sum(a * b for a, b in itertools.pairwise(residuals)) / squares if squares else 0.0
    effective = len(xs) * (1 - lag1) / (1 + lag1) if lag1 > 0 else float(len(xs))
    # Three samples at least: a line through two says nothing about its own error.
    freedom = max(effective, 3.0) - 2
    stderr = math.sqrt(squares / freedom / sxx)
    return Slope(slope, _t975(freedom) * stderr, lag1, effective)


# Student's t, 97.5th percentile, for 1..30 degrees of freedom; 2 beyond (1.96 to 2.04).
_T975: tuple[float, ...] = (
    *(12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26, 2.23, 2.20, 2.18, 2.16, 2.14, 2.13),
    *(2.12, 2.11, 2.10, 2.09, 2.09, 2.08, 2.07, 2.07, 2.06, 2.06, 2.06, 2.05, 2.05, 2.05, 2.04),
)


def _t975(freedom: float) -> float:
    """A few effective samples say little: the interval widens as Student's t does."""
    whole = math.floor(freedom)
    return _T975[whole - 1] if whole <= len(_T975) else 2.0


def soak(system: Running, seconds: float, workdir: Path, interval: float) -> Row:
    """Mixed chat and stream load for `seconds`, sampling RSS; warm-up share left out of the fit."""
    pids = system.pids()
    cpu_before = procs.cpu_seconds(pids)
    loads: list[subprocess.Popen[str]] = [
        wrk.start(system.target(kind), 32, seconds, workdir) for kind in (Kind.CHAT, Kind.STREAM)
    ]
    started = time.monotonic()
    samples: list[tuple[float, float]] = []
    while any(load.poll() is None for load in loads):
        samples.append((time.monotonic() - started, procs.rss_mb(pids)))
        time.sleep(interval)
    results = [wrk.finish(load, seconds) for load in loads]
    done = sum(result.ok_requests for result in results)
    fitted = [s for s in samples if s[0] >= seconds * SOAK_WARMUP_SHARE]
    slope = slope_mb_per_min(fitted)
    cpu = procs.cpu_seconds(pids) - cpu_before
    return {
        "lane": "soak",
        "system": system.name,
        "seconds": round(seconds, 1),
        "requests": done,
        "non2xx": sum(result.non2xx for result in results),
        "rss_start_mb": round(samples[0][1], 1) if samples else None,
        "rss_end_mb": round(samples[-1][1], 1) if samples else None,
        "slope_mb_per_min": round(slope.mb_per_min, 4),
        "slope_ci95_mb_per_min": round(slope.half_width, 4),
        "slope_residual_lag1": round(slope.lag1, 3),
        "slope_effective_samples": round(slope.effective_samples, 1),
        "cpu_us_per_req": round(cpu * 1e6 / done, 1) if done else None,
        "samples": [[round(t, 1), round(rss, 2)] for t, rss in samples],
    }


def rss(system: Running) -> Row:
    return {"lane": "rss", "system": system.name, "rss_mb": round(procs.rss_mb(system.pids()), 1)}
