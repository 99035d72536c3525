"""A description of the machine and the software measured, for the summary."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

from bench.harness import upstream, wrk
from bench.harness.systems import LITELLM, LOAD_CPUS, SUT_CPUS

# Reads the clock in a loop on one core and counts the gaps: time the core was taken away
# (by the hypervisor, or the kernel) from a process that never blocks.
_STALL_PROBE = """
import sys, time
clock = time.perf_counter_ns
prev = clock()
end = prev + int(float(sys.argv[1]) * 1e9)
over_quarter = over_one = longest = 0
while prev < end:
    now = clock()
    gap = now - prev
    prev = now
    if gap > 250_000:
        over_quarter += 1
        over_one += gap > 1_000_000
        longest = max(longest, gap)
print(over_quarter, over_one, longest)
"""

# The same small piece of Python work (what a relay does with a request: parse a body, build
# an answer) timed back to back and after each idle pause: after a pause the core's caches and
# clock have moved on to other work, and a relay woken by a paced event pays for it.
_COLD_PROBE = """
import json, statistics, sys, time
clock = time.perf_counter_ns
body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hello " * 40}]})
def work():
    request = json.loads(body)
    answer = {"id": "x", "choices": [{"delta": {"content": str(n)}} for n in range(20)]}
    return json.dumps(answer), request
samples = int(sys.argv[1])
for pause in [float(arg) for arg in sys.argv[2:]]:
    taken = []
    for _ in range(samples):
        if pause:
            time.sleep(pause)
        began = clock()
        work()
        taken.append(clock() - began)
    print(statistics.median(taken), end=" ")
"""


def _run(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except OSError:
        return "unknown"
    return (
        (done.stdout + done.stderr).strip().splitlines()[0] if (done.stdout + done.stderr) else ""
    )


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def describe(root: Path, stall_seconds: float = 3.0, cold_samples: int = 100) -> dict[str, str]:
    info = {
        "cores (nproc)": str(os.cpu_count()),
        "CPU": cpu_model(),
        "kernel": platform.release(),
        "Python": platform.python_version(),
        "nginx": _run([upstream.NGINX, "-v"]).split("/")[-1],
        "wrk": _run([wrk.WRK, "--version"]).split()[1] if _run([wrk.WRK, "--version"]) else "",
        "memory": _meminfo(),
        "idle cores (cpuidle)": idle_policy(),
        f"Python work on cpu {SUT_CPUS} after an idle pause": cold_work(cold_samples),
        "load average at start": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "sidegate commit": _commit(root),
    }
    if stall_seconds > 0 and SUT_CPUS != LOAD_CPUS:
        info[f"stalls of cpu {SUT_CPUS} while cpu {LOAD_CPUS} is busy"] = core_stalls(stall_seconds)
    if LITELLM.exists():
        version = "import importlib.metadata as m; print(m.version('litellm'))"
        info["LiteLLM"] = _run([str(LITELLM.with_name("python")), "-c", version])
    return info


def _commit(root: Path) -> str:
    commit = _run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"])
    status = ["git", "-C", str(root), "status", "--porcelain", "--", "proxy", "native"]
    dirty = subprocess.run(status, capture_output=True, text=True, check=False).stdout.strip()
    return f"{commit} (with uncommitted changes in proxy/ or native/)" if dirty else commit


def idle_policy(sys_root: Path = Path("/sys")) -> str:
    """How an idle core sleeps. On a virtual machine whose guest halts at once (halt-polling
    off), each wake-up of an idle core goes through the hypervisor: on one host a spinner at
    idle priority on the systems' core cut nginx's added p99 gap on the paced stream from
    0.47 to 0.12 ms and Sidegate's from 0.46 to 0.14 ms. The paced lane's figures depend on
    this as much as on the system."""
    cpuidle = sys_root / "devices/system/cpu/cpuidle"
    try:
        driver = (cpuidle / "current_driver").read_text().strip()
    except OSError:
        return "unknown"
    if driver == "none":
        return "none (the kernel's default halt)"
    if driver != "haltpoll":
        return driver
    try:
        poll_ns = int((sys_root / "module/haltpoll/parameters/guest_halt_poll_ns").read_text())
    except (OSError, ValueError):
        return "haltpoll"
    if poll_ns == 0:
        return "haltpoll, halt-polling off (an idle core halts at once)"
    return f"haltpoll, polls up to {poll_ns / 1000:g} µs before halting"


def _meminfo() -> str:
    first = Path("/proc/meminfo").read_text().splitlines()[0].split()
    return f"{int(first[1]) / 1024 / 1024:.1f} GiB"


def core_stalls(seconds: float) -> str:
    """How often the systems' core is taken away while the load generator's core is busy, as
    in every lane. At c=1 a request that meets a stall waits it out: when the Python floor
    and Sidegate share their p99, this is where it comes from."""
    spin = ["taskset", "-c", LOAD_CPUS, sys.executable, "-c", "while True: pass"]
    probe = ["taskset", "-c", SUT_CPUS, sys.executable, "-c", _STALL_PROBE, str(seconds)]
    try:
        spinner = subprocess.Popen(spin)
    except OSError:
        return "unknown"
    try:
        answer = _run(probe).split()
    finally:
        spinner.kill()
        spinner.wait()
    if len(answer) != 3 or not all(part.isdigit() for part in answer):
        return "unknown"
    quarter, one, longest = (int(part) for part in answer)
    return (
        f"{quarter / seconds:.1f}/s over 0.25 ms, {one / seconds:.1f}/s over 1 ms "
        f"(longest {longest / 1e6:.1f} ms; a clock read in a loop for {seconds:g} s)"
    )


def cold_work(samples: int, pauses: tuple[float, ...] = (0.0, 0.001, 0.02)) -> str:
    """How much longer the same Python work takes on the systems' core after it idled than back
    to back (medians of `samples`). The paced stream's events come 20 ms apart, so a relay meets
    each one on a core that idled: on one host the work took 3.3x as long after 20 ms, which
    is why a Python relay's added time to first byte there was several times nginx's."""
    probe = ["taskset", "-c", SUT_CPUS, sys.executable, "-c", _COLD_PROBE, str(samples)]
    answer = _run([*probe, *(str(pause) for pause in pauses)]).split()
    if len(answer) != len(pauses) or not all(part.replace(".", "").isdigit() for part in answer):
        return "unknown"
    base, *after = (float(part) for part in answer)
    factors = ", ".join(
        f"{taken / base:.1f}x after {pause * 1000:g} ms"
        for pause, taken in zip(pauses[1:], after, strict=True)
    )
    return f"{factors} (back to back {base / 1000:.0f} µs; medians of {samples})"
