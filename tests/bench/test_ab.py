"""The before/after entry point adds a Sidegate that imports the earlier source root, and
Sidegates with config overrides (variants)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench.harness import ab, systems


def test_the_baseline_runs_sidegate_from_the_other_source_root(tmp_path: Path) -> None:
    source = tmp_path / "proxy"
    (source / "sidegate").mkdir(parents=True)
    (source / "sidegate" / "__init__.py").write_text("")
    spec = ab.baseline_spec(source)
    assert spec.name == ab.BASELINE and spec.by_model and spec.auth == systems.SIDEGATE_KEY
    assert spec.launch is not None
    env = systems.Env(workdir=tmp_path, upstream_port=8000)
    launched = spec.launch(env, 8001)
    assert not isinstance(launched, str)
    argv, extra = launched
    assert extra["PYTHONPATH"] == str(source)
    assert argv[1:4] == ["-m", "sidegate.cli", "serve"]


def test_a_missing_source_root_is_reported_not_run(tmp_path: Path) -> None:
    spec = ab.baseline_spec(tmp_path / "nowhere")
    assert spec.launch is not None
    reason = spec.launch(systems.Env(workdir=tmp_path, upstream_port=8000), 8001)
    assert isinstance(reason, str) and "no sidegate package" in reason


def test_a_variant_runs_this_checkout_with_its_overrides(tmp_path: Path) -> None:
    spec = ab.variant_spec('nospend={"spend": {"enabled": false}}')
    assert spec.name == "sidegate-nospend" and spec.auth == systems.SIDEGATE_KEY
    assert spec.launch is not None
    launched = spec.launch(systems.Env(workdir=tmp_path, upstream_port=8000), 8001)
    assert not isinstance(launched, str)
    argv, extra = launched
    assert "PYTHONPATH" not in extra
    config = json.loads(Path(argv[argv.index("--config") + 1]).read_text())
    assert config["spend"] == {"enabled": False, "database_url": config["spend"]["database_url"]}
    assert config["auth"] == {"mode": "keys"}  # the rest is the benchmark's config


def test_a_variant_must_name_a_json_object() -> None:
    for bad in ("no-equals", "x=[1]", "x={not json"):
        with pytest.raises(SystemExit):
            ab.variant_spec(bad)
