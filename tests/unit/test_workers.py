"""Forked workers: a worker that fails says so and makes `serve` fail."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidegate import server
from sidegate.settings import Settings, load_settings


def _failing_run_one(settings: Settings, *, reuse_port: bool) -> None:
    raise RuntimeError("the worker could not start")


@pytest.fixture
def server_log(tmp_path: Path) -> Iterator[Path]:
    """The server logger's records, written to a file the forked children share."""
    path = tmp_path / "server.log"
    handler = logging.FileHandler(path)
    logger = logging.getLogger("sidegate.server")
    logger.addHandler(handler)
    try:
        yield path
    finally:
        logger.removeHandler(handler)
        handler.close()


def test_a_worker_that_fails_is_logged_and_fails_serve(
    monkeypatch: pytest.MonkeyPatch, server_log: Path
) -> None:
    # Only the forked children run this stand-in; the parent waits for them as it would.
    monkeypatch.setattr(server, "_run_one", _failing_run_one)
    settings = load_settings(None).with_server(workers=2, port=0)
    assert server._run_many(settings, 2) == 1
    logged = server_log.read_text()
    assert logged.count("worker failed") == 2
    assert logged.count("RuntimeError: the worker could not start") == 2
