"""Correct metric totals with `--workers N`: every worker writes its values to its own files in
one directory, and whichever worker answers a scrape sums them all.

This is prometheus-client's multiprocess mode. It is chosen when a value is created, from the
`PROMETHEUS_MULTIPROC_DIR` variable and `prometheus_client.values.ValueClass`; the library reads
both at import time, before settings are known. So the parent process, after parsing settings
and before forking, creates the directory and switches both; the workers (which build their
metrics after the fork) inherit the switch. A single-process server never touches either.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import multiprocess, values

_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def shared_metrics(workers: int) -> Iterator[str | None]:
    """Around forking `workers` processes: a fresh metrics directory, removed afterwards."""
    if workers <= 1:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="sidegate-metrics-") as directory:
        # prometheus-client reads this variable each time it opens a value file; it is not
        # Sidegate configuration, so it is written here rather than read through settings.
        os.environ[_VARIABLE] = directory  # noqa: TID251
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
        try:
            yield directory
        finally:
            os.environ.pop(_VARIABLE, None)  # noqa: TID251
            values.ValueClass = values.MutexValue


def worker_exited(pid: int) -> None:
    """Drop a finished worker's live gauges (`llm_active_requests`) from the sums."""
    if getattr(values.ValueClass, "_multiprocess", False):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
