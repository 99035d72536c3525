"""A description of the machine and the software measured, for the summary."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from bench.harness import upstream, wrk
from bench.harness.systems import LITELLM


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


def describe(root: Path) -> dict[str, str]:
    info = {
        "cores (nproc)": str(os.cpu_count()),
        "CPU": cpu_model(),
        "kernel": platform.release(),
        "Python": platform.python_version(),
        "nginx": _run([upstream.NGINX, "-v"]).split("/")[-1],
        "wrk": _run([wrk.WRK, "--version"]).split()[1] if _run([wrk.WRK, "--version"]) else "",
        "memory": _meminfo(),
        "load average at start": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "sidegate commit": _commit(root),
    }
    if LITELLM.exists():
        version = "import importlib.metadata as m; print(m.version('litellm'))"
        info["LiteLLM"] = _run([str(LITELLM.with_name("python")), "-c", version])
    return info


def _commit(root: Path) -> str:
    commit = _run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"])
    status = ["git", "-C", str(root), "status", "--porcelain", "--", "proxy", "native"]
    dirty = subprocess.run(status, capture_output=True, text=True, check=False).stdout.strip()
    return f"{commit} (with uncommitted changes in proxy/ or native/)" if dirty else commit


def _meminfo() -> str:
    first = Path("/proc/meminfo").read_text().splitlines()[0].split()
    return f"{int(first[1]) / 1024 / 1024:.1f} GiB"
