"""Does the memory a spend-log backlog takes come back once the backlog is written?

    python -m bench.spend_backlog [--holds 1,2,4,4] [--load-seconds 10]

Sidegate (defaults on, the benchmark's config) relays chat completions from wrk to the nginx
upstream, as in `python -m bench.harness`. Between stretches of load, another connection holds
the spend file's write lock for a few seconds while the load goes on: rows queue up (thousands
a second) and are written once the lock is let go. RSS is read before the hold, at its end, 3 s
after and after more load; then the growth from the first reading to the last is split by
mapping (/proc/PID/smaps). A queue whose rows live on the heap keeps each new peak backlog's
memory; a queue that gives it back ends close to where it started.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import time
from collections import Counter
from pathlib import Path

from bench.harness import systems, wrk
from bench.harness.systems import Kind, Running, Target

CONCURRENCY = 64


def rss_by_mapping(pid: int) -> Counter[str]:
    """Resident KB per mapping: file mappings by name, anonymous ones by address and size."""
    resident: Counter[str] = Counter()
    name = ""
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if fields[0] == "Rss:":
                resident[name] += int(fields[1])
            elif not fields[0].endswith(":"):
                low, high = (int(end, 16) for end in fields[0].split("-"))
                path = fields[5] if len(fields) > 5 else ""
                name = path.rsplit("/", 1)[-1] or f"anonymous {low:x} ({(high - low) >> 10} KB)"
    return resident


def report(label: str, pid: int) -> Counter[str]:
    resident = rss_by_mapping(pid)
    print(f"{label:<34} RSS {resident.total() / 1024:7.1f} MB", flush=True)
    return resident


def load(target: Target, seconds: float, workdir: Path) -> None:
    result = wrk.run(target, CONCURRENCY, seconds, workdir)
    print(f"  load {seconds:.0f} s: {result.rps:,.0f} req/s", flush=True)


def hold_lock(database: Path, target: Target, seconds: int, workdir: Path) -> int:
    """Load for `seconds` while another connection holds the file's write lock."""
    holder = sqlite3.connect(database, timeout=30, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        result = wrk.run(target, CONCURRENCY, seconds, workdir)
        holder.execute("COMMIT")
    finally:
        holder.close()
    return result.requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holds", default="1,2,4,4", help="seconds of each hold, in order")
    parser.add_argument("--load-seconds", type=float, default=10.0)
    args = parser.parse_args()
    holds = [int(seconds) for seconds in args.holds.split(",")]
    nginx, env = systems.start_alone("sidegate-backlog-")
    workdir = env.workdir
    sidegate: Running | str = "not started"
    try:
        sidegate = systems.start(
            systems.SPEC_BY_NAME["sidegate"], env, systems.direct_running(nginx)
        )
        if isinstance(sidegate, str):
            raise SystemExit(f"sidegate did not start: {sidegate}")
        target = sidegate.target(Kind.CHAT)
        database = workdir / f"spend-{sidegate.port}.db"
        load(target, 3 * args.load_seconds, workdir)
        first = report("after warm-up", sidegate.pid)
        last = first
        for seconds in holds:
            queued = hold_lock(database, target, seconds, workdir)
            report(f"lock held {seconds} s ({queued:,} rows)", sidegate.pid)
            time.sleep(3)
            report("  3 s after it was let go", sidegate.pid)
            load(target, args.load_seconds, workdir)
            last = report("  after more load", sidegate.pid)
        print("growth from the first reading to the last, by mapping (KB):")
        growth = Counter({name: last[name] - first[name] for name in first | last})
        for name, kilobytes in growth.most_common(6):
            print(f"  {name:<40} {kilobytes:+7d}")
    finally:
        if isinstance(sidegate, Running):
            sidegate.stop()
        nginx.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
