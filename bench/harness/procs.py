"""Processes under test: start them pinned to a core, wait for them, and read their cost from /proc.

CPU time and RSS are read for a process and all its live descendants, so a master with workers
(nginx, `sidegate serve --workers 2`) is measured whole.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: be sent SIGTERM if the harness dies, even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Proc:
    """A started process and the file its output goes to."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        # Each process leads its own session, so its workers stop with it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=8)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=5)


def start(
    name: str,
    argv: list[str],
    *,
    cpus: str,
    workdir: Path,
    env: dict[str, str] | None = None,
) -> Proc:
    """Start `argv` pinned to `cpus` with output in `workdir/<name>.log`."""
    log = workdir / f"{name}.log"
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    with log.open("wb") as sink:
        popen = subprocess.Popen(
            ["taskset", "-c", cpus, *argv],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=full_env,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509  (no threads run in the harness)
        )
    return Proc(name=name, popen=popen, log=log)


def wait_port(port: int, proc: Proc, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            return False
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return True
        time.sleep(0.05)
    return False


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def process_tree(pid: int) -> list[int]:
    tree = _children()
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        queue.extend(tree.get(current, []))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (live ones only)."""
    ticks = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        # Fields 14 and 15 of stat(5) (utime, stime); the slice starts at field 3.
        ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICKS


def core_wait_seconds(pids: list[int]) -> float:
    """Time the main threads of these processes (where their event loops run) were ready to
    run but waited for a core: the second field of /proc/PID/schedstat, NaN where the kernel
    does not keep it. At c=1 a request that arrives while that thread waits, for another
    thread of the system or anything else on its core, waits as long: a tail with this time is
    the core's, a tail without it is the system's own work. Helper threads are left out: their
    own waits (a writer thread kept waiting by the loop) delay no request."""
    waited_ns = 0
    for pid in pids:
        try:
            waited_ns += int(Path(f"/proc/{pid}/schedstat").read_text().split()[1])
        except FileNotFoundError:
            if not Path("/proc/self/schedstat").exists():
                return math.nan
        except (OSError, IndexError, ValueError):
            continue
    return waited_ns / 1e9


def rss_mb(pids: list[int]) -> float:
    total_kb = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total_kb += int(line.split()[1])
                break
    return total_kb / 1024
