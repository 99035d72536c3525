"""`python -m bench.harness.profile`: where a system's CPU goes under load, from py-spy samples.

Starts the nginx upstream and one Python system (Sidegate by default) pinned as in the
benchmark, drives it with wrk (c=64 unless told) and samples it with py-spy (`make bench-peers`
installs py-spy into bench/.peers/tools-venv). Prints the hottest frames by self and inclusive
share, and keeps the raw collapsed stacks (flamegraph input) in the output file.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
from pathlib import Path

from bench.harness import systems, wrk
from bench.harness.systems import LOAD_CPUS, Kind

TOOLS = systems.BENCH_DIR / ".peers" / "tools-venv" / "bin" / "py-spy"


def top_frames(raw: str, count: int) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """Total samples, and the hottest frames by self and by inclusive samples."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        frames = stack.split(";")
        total += int(samples)
        own[frames[-1]] += int(samples)
        for frame in set(frames):
            inclusive[frame] += int(samples)
    return total, own.most_common(count), inclusive.most_common(count)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.harness.profile", description=__doc__)
    parser.add_argument("--system", default="sidegate", choices=[s.name for s in systems.SPECS])
    parser.add_argument("--kind", default="chat", choices=[str(kind) for kind in Kind])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("profile-stacks.txt"))
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy") or (str(TOOLS) if TOOLS.exists() else None)
    if spy is None or args.kind == Kind.PACED:
        print("profile: needs py-spy (make bench-peers) and kind chat or stream", file=sys.stderr)
        return 3
    up, env = systems.start_alone("sidegate-profile-")
    workdir = env.workdir
    running = systems.start(systems.SPEC_BY_NAME[args.system], env, systems.direct_running(up))
    try:
        if isinstance(running, str):
            print(f"profile: {args.system} not available: {running}", file=sys.stderr)
            return 1
        target = running.target(Kind(args.kind))
        wrk.run(target, 16, 2, workdir)
        load = wrk.start(target, args.connections, args.seconds + 3, workdir)
        record = ["taskset", "-c", LOAD_CPUS, spy, "record", "--nonblocking", "-r", "250"]
        record += ["-d", str(args.seconds), "-p", str(running.pid), "--format", "raw"]
        subprocess.run([*record, "-o", str(args.out)], check=True, capture_output=True)
        result = wrk.finish(load, args.seconds + 3)
        total, own, inclusive = top_frames(args.out.read_text(), args.top)
        print(
            f"{args.system} {args.kind} c={args.connections}: {result.rps:,.0f} req/s, "
            f"max latency {result.latency_us['max'] / 1000:.1f} ms, {total} samples"
        )
        for title, frames in (("self", own), ("inclusive", inclusive)):
            print(f"--- {title}")
            for frame, samples in frames:
                print(f"{100 * samples / max(total, 1):5.1f}% {frame}")
        print(f"raw stacks: {args.out}")
        return 0
    finally:
        if not isinstance(running, str):
            running.stop()
        up.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
