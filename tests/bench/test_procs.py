"""What the harness reads of a system from /proc."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time

import pytest
from bench.harness import procs

SPIN = "import time\nend = time.monotonic() + 1.0\nwhile time.monotonic() < end: pass"


@pytest.mark.skipif(not os.path.exists("/proc/self/schedstat"), reason="no schedstat here")
def test_core_wait_counts_the_time_a_process_was_kept_off_its_busy_core() -> None:
    """Two spinning processes on one core each wait about half the time: the time a loop
    sharing its core would keep a request waiting."""
    core = str(min(os.sched_getaffinity(0)))
    pair = [subprocess.Popen(["taskset", "-c", core, sys.executable, "-c", SPIN]) for _ in range(2)]
    try:
        time.sleep(0.1)
        before = procs.core_wait_seconds([proc.pid for proc in pair])
        time.sleep(0.5)
        waited = procs.core_wait_seconds([proc.pid for proc in pair]) - before
    finally:
        for proc in pair:
            proc.wait(timeout=10)
    assert not math.isnan(waited)
    # 0.5 s of two spinners sharing a core: together they waited about 0.5 s.
    assert waited > 0.2


def test_core_wait_of_processes_that_are_gone_is_zero() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert procs.core_wait_seconds([gone.pid]) == 0.0
