"""Turn raw rows into medians, ratios, target checks and the markdown summary.

"Added" figures are taken per round (system minus direct in the same round, which the
interleaving keeps close in time) and the median of those differences is reported.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from bench.harness.lanes import PAIRED

Row = dict[str, Any]
FLOOR = "aiohttp-floor"
SUT = "sidegate"
PEER = "litellm"
# The practical limit: a latency target it misses on this host is the host's, not Sidegate's.
LIMIT = "nginx"
# Below this a statistically real slope is still under 3 MB an hour: reported, not alarming.
SLOW_DRIFT_MB_PER_MIN = 0.05
# (less the mock's own time, raw) row keys of each paced figure; see bench.harness.paced.
PACED_FIGURES = {
    "ttfb": ("ttfb_net_p50_ms", "ttfb_p50_ms"),
    "gap": ("gap_stretch_p99_ms", "gap_p99_ms"),
}


def median(values: Iterable[float | None]) -> float:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(kept) if kept else math.nan


def _rows(rows: list[Row], lane: str, system: str) -> list[Row]:
    return [r for r in rows if r.get("lane") == lane and r.get("system") == system]


def stat(rows: list[Row], lane: str, system: str, key: str) -> float:
    return median(r.get(key) for r in _rows(rows, lane, system))


def added(rows: list[Row], lane: str, system: str, key: str) -> float:
    """Median over rounds of (system - direct) for `key` in `lane`: direct's figure from the
    same row where direct took turns with the system (`PAIRED` keys), else from direct's own
    row of the same round."""
    base = {r["round"]: r.get(key) for r in _rows(rows, lane, "direct")}
    diffs = []
    for row in _rows(rows, lane, system):
        ref, value = row.get(PAIRED + key), row.get(key)
        if ref is None or math.isnan(ref):
            ref = base.get(row["round"])
        if ref is not None and value is not None:
            diffs.append(value - ref)
    return median(diffs)


def added_paced(rows: list[Row], lane: str, system: str, figure: str) -> float:
    """Added TTFB ("ttfb") or inter-chunk p99 ("gap") in the paced lane: from the figures
    free of the mock's own time where the system and direct both have them, else raw."""
    net, raw = PACED_FIGURES[figure]
    value = added(rows, lane, system, net)
    return added(rows, lane, system, raw) if math.isnan(value) else value


def spread(rows: list[Row], lane: str, system: str, key: str) -> float:
    """(max - min) / median over rounds, in percent: how noisy the figure was."""
    values: list[float] = [r[key] for r in _rows(rows, lane, system) if r.get(key) is not None]
    if len(values) < 2:
        return math.nan
    return float((max(values) - min(values)) / statistics.median(values) * 100)


def fmt(value: float, digits: int = 0, suffix: str = "") -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:,.{digits}f}{suffix}"


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


@dataclass(frozen=True)
class Layout:
    """Which lanes a summary reads: the chat sweep, the stream lane and the paced lane."""

    chat: list[str]
    stream: str
    paced: str

    @property
    def top(self) -> str:
        return self.chat[-1]

    @property
    def single(self) -> str:
        return self.chat[0]


def systems_in(rows: list[Row]) -> list[str]:
    seen: list[str] = []
    for row in rows:
        name = row.get("system")
        if name and row.get("lane") not in ("skip",) and name not in seen:
            seen.append(name)
    return seen


def throughput_table(rows: list[Row], layout: Layout, roles: dict[str, str]) -> list[str]:
    floor_rps = stat(rows, layout.top, FLOOR, "rps")
    floor_streams = stat(rows, layout.stream, FLOOR, "rps")
    lines = [
        "| system | role | chat req/s | spread | x floor | CPU µs/req | streams/s | x floor "
        "| CPU µs/stream | RSS after load (MB) |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for system in systems_in(rows):
        rps = stat(rows, layout.top, system, "rps")
        streams = stat(rows, layout.stream, system, "rps")
        rss = max((r["rss_mb"] for r in _rows(rows, "rss", system)), default=math.nan)
        lines.append(
            f"| {system} | {roles.get(system, '')} | {fmt(rps)} "
            f"| {fmt(spread(rows, layout.top, system, 'rps'), 0, '%')} "
            f"| {fmt(ratio(rps, floor_rps), 2)} "
            f"| {fmt(stat(rows, layout.top, system, 'cpu_us_per_req'))} | {fmt(streams)} "
            f"| {fmt(ratio(streams, floor_streams), 2)} "
            f"| {fmt(stat(rows, layout.stream, system, 'cpu_us_per_req'))} | {fmt(rss, 1)} |"
        )
    return lines


def latency_table(rows: list[Row], layout: Layout) -> list[str]:
    sweep = "".join(f" p50 @{lane.split('-')[-1]} |" for lane in layout.chat[1:])
    head = f"| system | p50 @c1 | p99 @c1 |{sweep} TTFB p50 | gap p99 |"
    lines = [head, "|---|" + "--:|" * (head.count("|") - 2)]
    for system in systems_in(rows):
        if system == "direct" or not any(
            _rows(rows, lane, system) for lane in (*layout.chat, layout.paced)
        ):
            continue
        cells = [
            added(rows, layout.single, system, "p50_ms"),
            added(rows, layout.single, system, "p99_ms"),
            *(added(rows, lane, system, "p50_ms") for lane in layout.chat[1:]),
            added_paced(rows, layout.paced, system, "ttfb"),
            added_paced(rows, layout.paced, system, "gap"),
        ]
        lines.append(f"| {system} | " + " | ".join(fmt(c, 3) for c in cells) + " |")
    base = [
        stat(rows, layout.single, "direct", "p50_ms"),
        stat(rows, layout.single, "direct", "p99_ms"),
        *(stat(rows, lane, "direct", "p50_ms") for lane in layout.chat[1:]),
        stat(rows, layout.paced, "direct", "ttfb_p50_ms"),
        stat(rows, layout.paced, "direct", "gap_p99_ms"),
    ]
    lines.append("| *direct (absolute)* | " + " | ".join(fmt(c, 3) for c in base) + " |")
    return lines


def growth_per_1k_requests(row: Row) -> float:
    """The slope's upper 95% bound as bytes of RSS per 1,000 requests served, at the soak's
    own rate: a per-request leak larger than this would have shown, which compares across
    machines of different speeds where MB/min does not."""
    slope, half = row["slope_mb_per_min"], row["slope_ci95_mb_per_min"]
    per_minute = row["requests"] / (row["seconds"] / 60) if row.get("seconds") else 0.0
    if math.isnan(slope) or math.isnan(half) or per_minute <= 0:
        return math.nan
    return float(max(slope + half, 0.0) * 2**20 / per_minute * 1000)


def soak_lines(rows: list[Row]) -> list[str]:
    soaks = [r for r in rows if r.get("lane") == "soak"]
    if not soaks:
        return ["No soak was run."]
    lines = [
        "| system | minutes | requests | RSS start → end (MB) | slope MB/min (±95%) "
        "| at most, bytes per 1k requests | verdict |",
        "|---|--:|--:|--:|--:|--:|---|",
    ]
    for row in soaks:
        slope, half = row["slope_mb_per_min"], row["slope_ci95_mb_per_min"]
        if math.isnan(slope):
            verdict = "too few samples"
        elif abs(slope) <= half:
            verdict = "flat (interval includes 0)"
        elif abs(slope) < SLOW_DRIFT_MB_PER_MIN:
            verdict = f"slow drift ({slope * 60:+.1f} MB/h)"
        else:
            verdict = f"**trend** ({slope * 60:+.1f} MB/h)"
        lines.append(
            f"| {row['system']} | {fmt(row['seconds'] / 60, 1)} | {fmt(row['requests'])} "
            f"| {fmt(row['rss_start_mb'], 1)} → {fmt(row['rss_end_mb'], 1)} "
            f"| {fmt(slope, 3)} ± {fmt(half, 3)} | {fmt(growth_per_1k_requests(row), 1)} "
            f"| {verdict} |"
        )
    lines += [
        "",
        "The fit leaves out the first 20% of the soak (warm-up). Its interval is Student's t "
        "(97.5%) standard errors, degrees of freedom from the effective sample size "
        "n(1 - r1)/(1 + r1), r1 the lag-1 autocorrelation of the residuals: RSS moves in "
        "steps, which a fit taking its samples as independent reads as a trend, while a "
        "steady leak still gives a narrow interval. One step near the middle of the fit can "
        "still read as a slow drift. r1 and the effective n are in results.jsonl. 'At most, "
        "bytes per 1k requests' is the interval's upper end over the soak's request rate: "
        "how much a leak could hide in each request served.",
    ]
    return lines


class Target(NamedTuple):
    """One of Sidegate's targets: what it measured and whether that meets it (None when it could
    not be measured), and for the latency targets the practical limit's (nginx's) figure in the
    same run, which tells a target the host does not allow from one Sidegate misses."""

    name: str
    measured: str
    met: bool | None
    limit: str = ""


def _check(value: float, ok: bool) -> bool | None:
    return None if math.isnan(value) else ok


def _latency_target(name: str, bound: float, figure: Callable[[str], float]) -> Target:
    value, limit = figure(SUT), figure(LIMIT)
    if math.isnan(limit):
        said = "n/a"
    else:
        said = f"{limit:.3f} ms ({'meets it' if limit <= bound else 'misses it too'})"
    return Target(name, fmt(value, 3, " ms"), _check(value, value <= bound), said)


def target_rows(rows: list[Row], layout: Layout) -> list[Target]:
    """Sidegate against each target; empty when Sidegate was not measured."""
    if not any(r.get("system") == SUT and r.get("lane") != "skip" for r in rows):
        return []
    chat = ratio(stat(rows, layout.top, SUT, "rps"), stat(rows, layout.top, FLOOR, "rps"))
    cpu_chat = ratio(
        stat(rows, layout.top, FLOOR, "cpu_us_per_req"),
        stat(rows, layout.top, SUT, "cpu_us_per_req"),
    )
    streams = ratio(stat(rows, layout.stream, SUT, "rps"), stat(rows, layout.stream, FLOOR, "rps"))
    peer = ratio(stat(rows, layout.top, SUT, "rps"), stat(rows, layout.top, PEER, "rps"))
    rss = max((r["rss_mb"] for r in _rows(rows, "rss", SUT)), default=math.nan)
    soak = [r for r in rows if r.get("lane") == "soak" and r["system"] == SUT]
    slope = soak[0]["slope_mb_per_min"] if soak else math.nan
    half = soak[0]["slope_ci95_mb_per_min"] if soak else math.nan
    return [
        Target(
            "chat ≥ 0.8x floor",
            f"{fmt(chat, 2, 'x')} (by CPU/req {fmt(cpu_chat, 2, 'x')})",
            _check(chat, chat >= 0.8),
        ),
        Target("streams ≥ 0.8x floor", fmt(streams, 2, "x"), _check(streams, streams >= 0.8)),
        Target("chat ≥ 50x LiteLLM", fmt(peer, 1, "x"), _check(peer, peer >= 50)),
        _latency_target(
            "added p50 @c1 ≤ 0.45 ms", 0.45, lambda s: added(rows, layout.single, s, "p50_ms")
        ),
        _latency_target(
            "added p99 @c1 ≤ 1 ms", 1.0, lambda s: added(rows, layout.single, s, "p99_ms")
        ),
        _latency_target(
            "added TTFB ≤ 0.3 ms", 0.3, lambda s: added_paced(rows, layout.paced, s, "ttfb")
        ),
        _latency_target(
            "added inter-chunk p99 ≤ 0.2 ms",
            0.2,
            lambda s: added_paced(rows, layout.paced, s, "gap"),
        ),
        Target("RSS after load ≤ 100 MB", fmt(rss, 1, " MB"), _check(rss, rss <= 100)),
        Target(
            "soak slope ≈ 0",
            f"{fmt(slope, 3)} ± {fmt(half, 3)} MB/min",
            _check(slope, abs(slope) <= half),
        ),
    ]


def targets_table(rows: list[Row], layout: Layout) -> list[str]:
    checks = target_rows(rows, layout)
    if not checks:
        return ["Sidegate was not measured in this run (see skipped systems)."]
    mark = {True: "met", False: "**missed**", None: "not measured"}
    lines = [
        f"| target | measured | | {LIMIT}, the practical limit |",
        "|---|--:|---|--:|",
    ]
    lines += [f"| {t.name} | {t.measured} | {mark[t.met]} | {t.limit or '—'} |" for t in checks]
    return lines


def _paced_seconds(meta: dict[str, Any]) -> str:
    # Runs written before the paced lane had its own length gave it `seconds` too.
    return f"{meta.get('paced_seconds', meta['seconds'])} s"


def summary(rows: list[Row], layout: Layout, meta: dict[str, Any]) -> str:
    roles = meta.get("roles", {})
    skipped = [r for r in rows if r.get("lane") == "skip"]
    out = [
        f"# Sidegate load benchmark — {meta['started']}",
        "",
        f"Command: `{meta['command']}`  ",
        f"Rounds: {meta['rounds']} (systems interleaved within each lane), "
        f"{meta['seconds']} s per lane ({_paced_seconds(meta)} in the paced lane); medians over "
        "rounds. One core for each system under "
        "test (cpu 1); wrk, the nginx upstream and the mock upstream on cpu 0. "
        "CPU µs per request is read from /proc and is steadier than req/s on a shared machine.",
        "",
        "## Throughput (chat at the highest concurrency, canned 20-event stream)",
        "",
        *throughput_table(rows, layout, roles),
        "",
        "## Added latency over direct, ms (chat sweep; paced 50 tok/s stream)",
        "",
        *latency_table(rows, layout),
        "",
        "## Sidegate against its targets",
        "",
        *targets_table(rows, layout),
        "",
        "## Soak",
        "",
        *soak_lines(rows),
        "",
    ]
    if skipped:
        out += ["## Not measured", ""]
        out += [f"- {r['system']}: {r['reason']}" for r in skipped]
        out.append("")
    out += ["## Machine", ""]
    out += [f"- {key}: {value}" for key, value in meta["machine"].items()]
    if meta.get("notes"):
        out += ["", "## Notes", ""]
        out += [f"- {note}" for note in meta["notes"]]
    out.append("")
    return "\n".join(out)
