"""What the summary says of the machine."""

from __future__ import annotations

from pathlib import Path

from bench.harness import machine


def test_the_machine_says_how_its_idle_cores_sleep(tmp_path: Path) -> None:
    assert machine.idle_policy(tmp_path) == "unknown"
    cpuidle = tmp_path / "devices/system/cpu/cpuidle"
    cpuidle.mkdir(parents=True)
    (cpuidle / "current_driver").write_text("intel_idle\n")
    assert machine.idle_policy(tmp_path) == "intel_idle"
    (cpuidle / "current_driver").write_text("none\n")
    assert machine.idle_policy(tmp_path) == "none (the kernel's default halt)"
    (cpuidle / "current_driver").write_text("haltpoll\n")
    assert machine.idle_policy(tmp_path) == "haltpoll"
    parameters = tmp_path / "module/haltpoll/parameters"
    parameters.mkdir(parents=True)
    (parameters / "guest_halt_poll_ns").write_text("0\n")
    assert (
        machine.idle_policy(tmp_path) == "haltpoll, halt-polling off (an idle core halts at once)"
    )
    (parameters / "guest_halt_poll_ns").write_text("200000\n")
    assert machine.idle_policy(tmp_path) == "haltpoll, polls up to 200 µs before halting"
    assert machine.idle_policy() != ""  # this machine's own, whatever it is


def test_the_machine_says_how_much_slower_python_work_is_after_an_idle_pause() -> None:
    said = machine.cold_work(3, pauses=(0.0, 0.001))
    assert said.endswith("; medians of 3)"), said
    assert "x after 1 ms" in said and "back to back" in said
