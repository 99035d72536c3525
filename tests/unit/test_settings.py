from __future__ import annotations

from pathlib import Path

import pytest

from sidegate.cli import main
from sidegate.settings import ConfigError, load_settings, parse_settings

GOOD = """
server: {port: "${PORT:-9090}"}
upstreams:
  openai: {provider: openai, endpoints: ["https://api.openai.com/v1"], api_key: "${OPENAI_API_KEY}"}
models:
  gpt-4o-mini: {upstream: openai, price_per_1k: {input: 0.00015, output: 0.0006}}
plans:
  starter: {rpm: 60, tpm: 100000}
tenants:
  acme: {plan: starter, keys: ["${ACME_KEY}"]}
"""


def test_environment_references_are_filled() -> None:
    settings = parse_settings(GOOD, {"OPENAI_API_KEY": "sk-up", "ACME_KEY": "sk-acme"})
    assert settings.server.port == 9090
    assert settings.upstreams["openai"].api_key == "sk-up"
    assert settings.tenants["acme"].keys == ("sk-acme",)
    assert settings.auth_mode == "keys"


def test_default_applies_when_variable_is_empty_or_unset() -> None:
    env = {"OPENAI_API_KEY": "k", "ACME_KEY": "a", "PORT": ""}
    assert parse_settings(GOOD, env).server.port == 9090
    assert parse_settings(GOOD, {**env, "PORT": "7000"}).server.port == 7000


def test_unset_variable_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"upstreams\.openai\.api_key: .*OPENAI_API_KEY"):
        parse_settings(GOOD, {"ACME_KEY": "a"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "server: {prot: 1}\nmodels: {m: {upstream: u}}\nupstreams: {u: {provider: mock}}",
            r"server\.prot: unknown key",
        ),
        ("server: {port: nope}", r"server\.port"),
        (
            "upstreams: {u: {provider: mock}}\nmodels: {m: {upstream: missing}}",
            r"models\.m\.upstream: no upstream named 'missing'",
        ),
        (
            "upstreams: {u: {endpoints: ['ftp://x']}}\nmodels: {m: {upstream: u}}",
            r"upstreams\.u.*not an http",
        ),
        (
            "upstreams: {u: {provider: mock}}\nmodels: {m: {upstream: u, fallbacks: [x]}}",
            r"models\.m\.fallbacks",
        ),
        (
            "upstreams: {u: {provider: mock}}\nmodels: {m: {upstream: u}}\n"
            "tenants: {a: {plan: gold, keys: [k]}}",
            r"tenants\.a\.plan",
        ),
        (
            "upstreams: {u: {provider: mock}}\nmodels: {m: {upstream: u}}\n"
            "tenants: {a: {keys: [k]}, b: {keys: [k]}}",
            r"tenants\.b\.keys",
        ),
        ("- just a list", "mapping"),
        ("a: [unclosed", "YAML"),
    ],
)
def test_invalid_configs_name_the_offending_key(text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        parse_settings(text, {})


def test_embedded_default_serves_mock_gpt_without_auth() -> None:
    settings = load_settings(None)
    assert list(settings.models) == ["mock-gpt"]
    assert settings.auth_mode == "none"
    assert settings.state.backend == "memory"
    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 8080)


def test_check_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: {port: 80, colour: blue}\n")
    assert main(["check-config", str(bad)]) == 1
    assert "server.colour: unknown key" in capsys.readouterr().err
    good = tmp_path / "good.yaml"
    good.write_text("upstreams: {u: {provider: mock}}\nmodels: {m: {upstream: u}}\n")
    assert main(["check-config", str(good)]) == 0
