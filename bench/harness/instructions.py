"""`python -m bench.harness.instructions`: CPU instructions per request, under callgrind.

CPU time per request moves by tens of percent on a shared or virtual machine; the number of
instructions a request executes does not (±2 % here, whatever else runs). Each variant is
started under `valgrind --tool=callgrind` with instrumentation off, warmed up, then counted
only while wrk drives it (`callgrind_control -i on/off`); the result is the instructions
executed in user space by all its threads, divided by the requests answered. Kernel time
(system calls) is not counted, and a lower instruction count does not always mean as much less
time: compare variants of one build, or with the floors, rather than across machines.

Variants are Sidegate configs (overrides merged into the benchmark's defaults-on config),
the defaults run from another checkout's source root (`source:<dir>`, as `bench.harness.ab`'s
baseline: a change before and after), or reference systems:

    python -m bench.harness.instructions --variant defaults={} \\
        --variant 'no-spend={"spend": {"enabled": false}}' --variant floor=aiohttp-floor
    python -m bench.harness.instructions --variant before=source:/tmp/baseline/proxy \\
        --variant after={}
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import procs, systems, wrk
from bench.harness.systems import Kind

Spec = str | dict[str, Any] | Path


def parse_variant(text: str) -> tuple[str, Spec]:
    """`name=<JSON object of config overrides>`, `name=<reference system>` or
    `name=source:<dir>` (the defaults from the `sidegate` package under another source root)."""
    name, sep, spec = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected name=spec, got {text!r}")
    if spec in systems.SPEC_BY_NAME:
        return name, spec
    if spec.startswith("source:"):
        root = Path(spec.removeprefix("source:"))
        if not (root / "sidegate" / "__init__.py").is_file():
            raise argparse.ArgumentTypeError(f"{name}: no sidegate package under {root}")
        return name, root
    try:
        overrides = json.loads(spec)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"{name}: not JSON nor a system: {exc}") from None
    if not isinstance(overrides, dict):
        raise argparse.ArgumentTypeError(f"{name}: overrides must be a JSON object")
    return name, overrides


def _argv(env: systems.Env, port: int, name: str, spec: Spec) -> tuple[list[str], dict[str, str]]:
    """The command for a variant, and what its environment adds."""
    if isinstance(spec, str):
        launch = systems.SPEC_BY_NAME[spec].launch
        launched = launch(env, port) if launch is not None else "has no process of its own"
        if isinstance(launched, str):
            raise SystemExit(f"instructions: {spec} cannot run: {launched}")
        return launched
    overrides, extra = (spec, {}) if isinstance(spec, dict) else ({}, {"PYTHONPATH": str(spec)})
    config = env.workdir / f"{name}.json"
    config.write_text(json.dumps(systems.merged(systems.sidegate_config(env, port, 1), overrides)))
    return [env.python, "-m", "sidegate.cli", "serve", "--config", str(config)], extra


def _total_instructions(out: Path) -> int:
    total = 0
    for part in out.parent.glob(out.name + "*"):
        for line in part.read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
    return total


def _answers(target: systems.Target, workdir: Path) -> bool:
    try:
        return wrk.run(target, 1, 1, workdir).ok_requests > 0
    except RuntimeError:  # wrk could not connect at all
        return False


def measure(
    env: systems.Env, name: str, spec: Spec, kind: Kind, args: argparse.Namespace
) -> tuple[int, int]:
    """(instructions, requests) for one variant."""
    port = procs.free_port()
    out = env.workdir / f"callgrind-{name}.out"
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
    command, extra = _argv(env, port, name, spec)
    argv = [*valgrind, f"--callgrind-out-file={out}", *command]
    log = (env.workdir / f"{name}.log").open("wb")
    proc = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, **extra},
    )
    gateway = not isinstance(spec, str)  # a Sidegate config: by model, with its key
    auth = systems.SIDEGATE_KEY if gateway else ""
    target = systems.Running(name, port, None, proc.pid, gateway, auth).target(kind)
    try:
        deadline = time.monotonic() + 300  # start-up under valgrind is slow
        while not _answers(target, env.workdir):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"instructions: {name} did not answer (see {log.name})")
            time.sleep(1)
        wrk.run(target, args.connections, 2, env.workdir)  # warm-up, not counted
        control = ["callgrind_control", "-i"]
        subprocess.run([*control, "on", str(proc.pid)], check=True, capture_output=True)
        result = wrk.run(target, args.connections, args.seconds, env.workdir)
        subprocess.run([*control, "off", str(proc.pid)], check=True, capture_output=True)
    finally:
        proc.terminate()
        proc.wait(timeout=120)
        log.close()
    return _total_instructions(out), result.ok_requests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.harness.instructions",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--variant", action="append", type=parse_variant, required=True)
    parser.add_argument("--kind", default="chat", choices=[Kind.CHAT, Kind.STREAM])
    parser.add_argument("--seconds", type=float, default=12.0, help="counted load per variant")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--sdk-headers", action="store_true", help=wrk.SDK_HEADERS_HELP)
    parser.add_argument(
        "--keep", type=Path, help="copy each variant's callgrind output here (callgrind_annotate)"
    )
    args = parser.parse_args(argv)
    if args.sdk_headers:
        wrk.send_sdk_headers()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("instructions: needs valgrind (Debian package valgrind)", file=sys.stderr)
        return 3
    up, env = systems.start_alone("sidegate-instructions-")
    try:
        for name, spec in args.variant:
            instructions, requests = measure(env, name, spec, Kind(args.kind), args)
            per_request = instructions / requests / 1000 if requests else float("nan")
            print(f"{name:24s} {per_request:9.1f} k instructions/request  ({requests} requests)")
            if args.keep is not None:
                args.keep.mkdir(parents=True, exist_ok=True)
                for part in env.workdir.glob(f"callgrind-{name}.out*"):
                    shutil.copy(part, args.keep / part.name)
    finally:
        up.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
