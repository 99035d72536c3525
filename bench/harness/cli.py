"""`python -m bench.harness`: Sidegate beside the ceiling, the floor and its peers, in one run.

Starts the upstream and every available system, then for each round runs every lane over every
system in turn (A B C A B C ...), then the soak. Raw rows go to results.jsonl as they are
measured; summary.md and latency.png are written at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from bench.harness import lanes, machine, plot, procs, report, systems, upstream, wrk
from bench.harness.lanes import Lane

ROOT = Path(__file__).resolve().parent.parent.parent
RESULTS = ROOT / "bench" / "results"
PUBLISHED = ROOT / "bench" / "RESULTS.md"
MISSING_TOOL_EXIT = 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.harness", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="per lane and system")
    parser.add_argument(
        "--paced-seconds",
        type=float,
        default=30.0,
        help="per system in the paced lane: its p99 gap needs more events than a mean does "
        "(bench/README.md, 'Paced lane length')",
    )
    parser.add_argument("--soak-minutes", type=float, default=10.0, help="0 skips the soak")
    parser.add_argument("--soak-systems", default="sidegate", help="comma-separated")
    parser.add_argument(
        "--systems",
        help="comma-separated subset of: " + ", ".join(spec.name for spec in systems.SPECS),
    )
    parser.add_argument("--concurrency", default="1,8,64", help="chat sweep")
    parser.add_argument(
        "--lanes", help="comma-separated lane names or prefixes (chat, stream, paced)"
    )
    parser.add_argument("--stream-concurrency", type=int, default=64)
    parser.add_argument("--paced-clients", type=int, default=4)
    parser.add_argument("--warmup-seconds", type=float, default=2.0)
    parser.add_argument("--out", type=Path, help="default bench/results/<timestamp>")
    parser.add_argument("--publish", action="store_true", help="copy summary to bench/RESULTS.md")
    parser.add_argument(
        "--report-only",
        type=Path,
        metavar="DIR",
        help="rewrite summary.md and the plot from DIR's results.jsonl and meta.json",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="a few seconds per lane, one round, no peers"
    )
    parser.add_argument("--sdk-headers", action="store_true", help=wrk.SDK_HEADERS_HELP)
    return parser


def _apply_smoke(args: argparse.Namespace) -> None:
    args.rounds, args.seconds, args.paced_seconds = 1, 1.0, 1.5
    args.warmup_seconds, args.soak_minutes = 0.0, 0.05
    args.soak_systems = "sidegate,aiohttp-floor"
    if not args.systems:
        args.systems = ",".join(spec.name for spec in systems.SPECS if not spec.peer)


def missing_tools() -> list[str]:
    tools = {"nginx": upstream.NGINX, "wrk": wrk.WRK, "taskset": "taskset"}
    return [name for name, path in tools.items() if not shutil.which(path)]


@dataclass
class Progress:
    """One line per measurement, with a rough time left, on stderr."""

    total: int
    done: int = 0
    started: float = field(default_factory=time.monotonic)

    def say(self, text: str) -> None:
        print(f"[bench] {text}", file=sys.stderr, flush=True)

    def step(self, text: str) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.started
        left = elapsed / self.done * (self.total - self.done)
        self.say(f"{self.done}/{self.total} {elapsed:4.0f}s (~{left:.0f}s left) {text}")


def describe_row(row: dict[str, Any]) -> str:
    name = f"{row['lane']:<10} {row['system']:<14}"
    cpu = row.get("cpu_us_per_req")
    cpu_text = f", {cpu:,.0f} µs CPU/req" if cpu is not None else ""
    if "rps" in row:
        bad = f", {row['non2xx']} non-2xx" if row.get("non2xx") else ""
        return f"{name} {row['rps']:>9,.0f} req/s p50 {row['p50_ms']:.3f} ms{cpu_text}{bad}"
    if "ttfb_p50_ms" in row:
        return (
            f"{name} {row['streams']} streams, TTFB p50 {row['ttfb_p50_ms']:.2f} ms, "
            f"gap p99 {row['gap_p99_ms']:.2f} ms"
        )
    return name


@dataclass
class Run:
    args: argparse.Namespace
    sink: IO[str]
    rows: list[dict[str, Any]] = field(default_factory=list)

    def record(self, row: dict[str, Any]) -> None:
        row.setdefault("ts", round(time.time(), 3))
        self.rows.append(row)
        self.sink.write(json.dumps(row) + "\n")
        self.sink.flush()


def _plan(args: argparse.Namespace, paced_ok: bool) -> list[Lane]:
    sweep = sorted({int(c) for c in args.concurrency.split(",")})
    planned = lanes.lanes_for(sweep, args.stream_concurrency, args.paced_clients)
    wanted = [name.strip() for name in args.lanes.split(",")] if args.lanes else [""]
    return [
        lane
        for lane in planned
        if (paced_ok or not lane.paced) and any(lane.name.startswith(w) for w in wanted)
    ]


def _measure_all(
    run: Run, running: list[systems.Running], plan: list[Lane], workdir: Path, progress: Progress
) -> None:
    args = run.args
    throughput_only = {s.name for s in running if systems.SPEC_BY_NAME[s.name].throughput_only}
    direct = next((system for system in running if system.name == "direct"), None)
    for round_no in range(1, args.rounds + 1):
        for lane in plan:
            for system in list(running):
                if system.name in throughput_only and not lane.throughput:
                    continue
                if system.proc and not system.proc.alive():
                    run.record(
                        {
                            "lane": "skip",
                            "system": system.name,
                            "reason": f"died during the run: {system.proc.log_tail(2)}",
                        }
                    )
                    running.remove(system)
                    continue
                seconds = args.paced_seconds if lane.paced else args.seconds
                row = lanes.measure(system, lane, seconds, workdir, reference=direct)
                row["round"] = round_no
                run.record(row)
                progress.step(f"round {round_no} {describe_row(row)}")
        for system in running:
            run.record({**lanes.rss(system), "round": round_no})


def _soak(run: Run, running: list[systems.Running], workdir: Path, progress: Progress) -> None:
    wanted = [name.strip() for name in run.args.soak_systems.split(",") if name.strip()]
    seconds = run.args.soak_minutes * 60
    interval = min(5.0, max(0.2, seconds / 60))
    for system in running:
        if system.name in wanted and seconds > 0:
            progress.say(f"soak {system.name} for {seconds / 60:.1f} min")
            row = lanes.soak(system, seconds, workdir, interval)
            run.record(row)
            progress.step(
                f"soak {system.name}: slope {row['slope_mb_per_min']:.3f} "
                f"± {row['slope_ci95_mb_per_min']:.3f} MB/min"
            )


def _start_systems(
    run: Run,
    env: systems.Env,
    direct: systems.Running,
    progress: Progress,
    running: list[systems.Running],
) -> None:
    """Start the chosen systems into `running`, which the caller stops even if this fails."""
    chosen = run.args.systems.split(",") if run.args.systems else [s.name for s in systems.SPECS]
    # Every "added" figure is measured against direct, so it is always in the run.
    chosen = ["direct", *(name for name in chosen if name.strip() != "direct")]
    for name in chosen:
        spec = systems.SPEC_BY_NAME[name.strip()]
        outcome = systems.start(spec, env, direct)
        if isinstance(outcome, str):
            progress.say(f"{spec.name}: not available ({outcome.splitlines()[0][:200]})")
            run.record({"lane": "skip", "system": spec.name, "reason": outcome.replace("\n", " ")})
            continue
        progress.say(f"{spec.name}: up on port {outcome.port}")
        running.append(outcome)


def _total_steps(args: argparse.Namespace, running: list[systems.Running], plan: list[Lane]) -> int:
    per_round = 0
    for lane in plan:
        for system in running:
            per_round += lane.throughput or not systems.SPEC_BY_NAME[system.name].throughput_only
    soaks = {n.strip() for n in args.soak_systems.split(",")} & {s.name for s in running}
    return int(per_round * args.rounds + (len(soaks) if args.soak_minutes > 0 else 0))


def _wants_redis(args: argparse.Namespace) -> bool:
    chosen = args.systems.split(",") if args.systems else [s.name for s in systems.SPECS]
    return "sidegate-w2" in {name.strip() for name in chosen}


def execute(args: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
    workdir = Path(tempfile.mkdtemp(prefix="sidegate-bench-"))
    progress = Progress(total=1)
    started: list[systems.Running] = []
    mock: procs.Proc | None = None
    up: upstream.Upstream | None = None
    extra: list[procs.Proc | None] = []
    with (out / "results.jsonl").open("w") as sink:
        run = Run(args, sink)
        try:
            paced = upstream.start_paced_mock(workdir, sys.executable, systems.LOAD_CPUS)
            if paced is None:
                progress.say("paced lane: sidegate mock-upstream not available, lane skipped")
                run.record(
                    {
                        "lane": "skip",
                        "system": "mock-upstream",
                        "reason": "sidegate mock-upstream did not come up; paced lane skipped",
                    }
                )
            mock = paced[0] if paced else None
            up = upstream.start_upstream(workdir, systems.LOAD_CPUS, paced[1] if paced else None)
            redis = upstream.start_redis(workdir, systems.LOAD_CPUS) if _wants_redis(args) else None
            extra.append(redis[0] if redis else None)
            redis_url = f"redis://127.0.0.1:{redis[1]}/0" if redis else None
            env = systems.Env(workdir=workdir, upstream_port=up.port, redis_url=redis_url)
            _start_systems(run, env, systems.direct_running(up), progress, started)
            running = list(started)
            plan = _plan(args, paced is not None)
            for system in running:
                spec = systems.SPEC_BY_NAME[system.name]
                with_paced = paced is not None and not spec.throughput_only
                lanes.warm_up(system, args.warmup_seconds, workdir, with_paced)
            progress = Progress(total=_total_steps(args, running, plan))
            _measure_all(run, running, plan, workdir, progress)
            _soak(run, running, workdir, progress)
        finally:
            systems.stop_all(started)
            for proc in (up.proc if up else None, mock, *extra):
                if proc:
                    proc.stop()
            shutil.rmtree(workdir, ignore_errors=True)
        return run.rows


def write_report(out: Path, rows: list[dict[str, Any]], meta: dict[str, Any], publish: bool) -> str:
    layout = report.Layout(**meta["layout"])
    text = report.summary(rows, layout, meta)
    (out / "summary.md").write_text(text)
    plot.plot(rows, layout, out / "latency.png", f"Added latency over direct ({meta['started']})")
    if publish:
        PUBLISHED.write_text(text)
    return text


def _meta(args: argparse.Namespace, argv: list[str], stamp: str) -> dict[str, Any]:
    sweep = sorted({int(c) for c in args.concurrency.split(",")})
    return {
        "started": stamp,
        "command": "python -m bench.harness " + shlex.join(argv),
        "rounds": args.rounds,
        "seconds": args.seconds,
        "paced_seconds": args.paced_seconds,
        "layout": {
            "chat": [f"chat-c{c}" for c in sweep],
            "stream": f"stream-c{args.stream_concurrency}",
            "paced": f"paced-c{args.paced_clients}",
        },
        "roles": {spec.name: spec.role for spec in systems.SPECS},
        "notes": [
            "sidegate-w2 runs on both cores, shared with wrk and the upstream, so its figures show "
            "efficiency (CPU µs/req) more than scaling.",
            "Added latency = system minus direct in the same round; negative values are noise. "
            "In the paced lane direct is measured stream by stream in turn with each system "
            "(the `direct_*` figures of its row).",
            "Added TTFB and gap p99 leave out the mock upstream's own time: its time from the "
            "request to its first write, and its own gap between two writes, which it states in "
            "SSE comments (`--stamp-events`). A system that drops the comments is compared on "
            "the raw figures. The direct row shows the raw figures.",
        ],
    }


def main(argv: list[str] | None = None) -> int:
    argv = list(argv if argv is not None else sys.argv[1:])
    args = _parser().parse_args(argv)
    if args.sdk_headers:
        wrk.send_sdk_headers()
    if args.report_only:
        out = args.report_only
        rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
        meta = json.loads((out / "meta.json").read_text())
        print(write_report(out, rows, meta, args.publish))
        return 0
    if args.smoke:
        _apply_smoke(args)
    missing = missing_tools()
    if missing:
        print(
            f"bench: missing {', '.join(missing)}; run scripts/install-system-deps.sh",
            file=sys.stderr,
        )
        return MISSING_TOOL_EXIT
    # `finally` blocks stop every started process when the harness is told to stop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # The harness itself (and the paced-lane client) lives on the load generator's core.
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {int(systems.LOAD_CPUS)})
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or RESULTS / stamp
    out.mkdir(parents=True, exist_ok=True)
    meta = _meta(args, argv, stamp)
    meta["machine"] = machine.describe(
        ROOT, stall_seconds=0.5 if args.smoke else 3.0, cold_samples=10 if args.smoke else 100
    )
    rows = execute(args, out)
    meta["machine"]["load average at end"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    print(write_report(out, rows, meta, args.publish))
    print(f"[bench] results in {out}", file=sys.stderr)
    return 0
