"""The PNG: added latency (p50, and p99 dashed) over direct against concurrency, per system."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
from bench.harness.report import Layout, Row, added, systems_in

# Headless: no display on a server or in CI.
matplotlib.use("Agg")
import matplotlib.pyplot as plt

FLOOR_MS = 0.01


def plot(rows: list[Row], layout: Layout, path: Path, title: str) -> None:
    concurrency = [int(lane.split("-c")[-1]) for lane in layout.chat]
    figure, axes = plt.subplots(figsize=(8, 5), dpi=110)
    for system in systems_in(rows):
        if system == "direct":
            continue
        p50 = [added(rows, lane, system, "p50_ms") for lane in layout.chat]
        if all(math.isnan(v) for v in p50):
            continue
        p99 = [added(rows, lane, system, "p99_ms") for lane in layout.chat]
        # Log scale: a difference at or below zero is drawn at the floor of the axis.
        line = axes.plot(concurrency, [max(v, FLOOR_MS) for v in p50], marker="o", label=system)
        axes.plot(
            concurrency,
            [max(v, FLOOR_MS) for v in p99],
            linestyle="--",
            color=line[0].get_color(),
            alpha=0.5,
        )
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xticks(concurrency, [str(c) for c in concurrency])
    axes.set_xlabel("concurrent connections (chat, non-streaming)")
    axes.set_ylabel("added latency over direct, ms (solid p50, dashed p99)")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
