"""`sidegate serve` when its port is taken after the start-up check (the tests in
tests/e2e/test_cli.py run the real command; this race cannot be staged there)."""

from __future__ import annotations

import errno

import pytest
from tests.procs import free_port

from sidegate import cli
from sidegate.settings import Settings


def test_a_port_taken_between_the_check_and_the_bind_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def taken(_settings: Settings) -> int:
        raise OSError(errno.EADDRINUSE, "error while attempting to bind on address")

    monkeypatch.setattr("sidegate.server.serve", taken)
    monkeypatch.setattr("sidegate.observability.logging.configure_logging", lambda *_: None)
    port = free_port()
    assert cli.main(["serve", "--port", str(port)]) == 1
    assert capsys.readouterr().err == (
        f"sidegate: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    )


def test_other_os_errors_keep_their_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_settings: Settings) -> int:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr("sidegate.server.serve", broken)
    monkeypatch.setattr("sidegate.observability.logging.configure_logging", lambda *_: None)
    with pytest.raises(OSError, match="Too many open files"):
        cli.main(["serve", "--port", str(free_port())])
