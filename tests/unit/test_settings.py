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
            r"tenants\.b\.keys: a key is given in tenants\.a\.keys too",
        ),
        (
            "upstreams: {u: {provider: mock}}\nmodels: {m: {upstream: u}}\n"
            "tenants: {a: {keys: [k, k]}}",
            r"tenants\.a\.keys: a key is given twice",
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


ENV_STRINGS = """
server: {port: "${PORT:-9090}", workers: "${WORKERS:-1}"}
upstreams: {u: {provider: mock, api_key: "${UPSTREAM_KEY}"}}
models: {m: {upstream: u, price_per_1k: {input: "${PRICE:-0.5}"}}}
tenants: {acme: {keys: ["${ACME_KEY}", "pre-${SUFFIX:-x}-post"]}}
state: {fail_open: "${FAIL_OPEN:-true}"}
"""


@pytest.mark.parametrize("value", ["[abc", "12345", "yes", "0x1F", "null", "1.5", "{a: 1}", "~"])
def test_a_filled_in_value_stays_the_string_it_was(value: str) -> None:
    settings = parse_settings(ENV_STRINGS, {"UPSTREAM_KEY": value, "ACME_KEY": value})
    assert settings.upstreams["u"].api_key == value
    assert settings.tenants["acme"].keys == (value, "pre-x-post")


def test_number_and_boolean_fields_take_filled_in_strings() -> None:
    env = {"UPSTREAM_KEY": "k", "ACME_KEY": "a"}
    settings = parse_settings(ENV_STRINGS, env)
    assert (settings.server.port, settings.server.workers) == (9090, 1)
    assert settings.models["m"].price_per_1k.input == 0.5
    assert settings.state.fail_open is True
    more = {**env, "PORT": "19101", "WORKERS": "4", "PRICE": "2", "FAIL_OPEN": "false"}
    settings = parse_settings(ENV_STRINGS, more)
    assert (settings.server.port, settings.server.workers) == (19101, 4)
    assert settings.models["m"].price_per_1k.input == 2.0
    assert settings.state.fail_open is False


@pytest.mark.parametrize("port", ["[abc", "eighty", "70000"])
def test_a_filled_in_port_that_is_no_port_names_the_key(port: str) -> None:
    with pytest.raises(ConfigError, match=r"^server\.port: "):
        parse_settings(ENV_STRINGS, {"UPSTREAM_KEY": "k", "ACME_KEY": "a", "PORT": port})


MOCK_ONLY = "upstreams: {u: {provider: mock}}\nmodels: {m: {upstream: u}}\n"


def test_jwt_settings_nested_mean_the_same_as_flat() -> None:
    fields = "jwks_url: 'http://idp/jwks', issuer: iss, audience: aud, tenant_claim: org"
    flat = parse_settings(MOCK_ONLY + f"auth: {{mode: jwt, {fields}}}\n", {})
    nested = parse_settings(MOCK_ONLY + f"auth: {{mode: jwt, jwt: {{{fields}}}}}\n", {})
    for settings in (flat, nested):
        assert settings.auth_mode == "jwt"
        auth = settings.auth
        assert (auth.jwks_url, auth.issuer, auth.audience, auth.tenant_claim) == (
            "http://idp/jwks",
            "iss",
            "aud",
            "org",
        )
    mixed = "auth: {mode: jwt, issuer: iss, jwt: {jwks_url: 'http://idp/jwks'}}\n"
    auth = parse_settings(MOCK_ONLY + mixed, {}).auth
    assert (auth.jwks_url, auth.issuer, auth.tenant_claim) == ("http://idp/jwks", "iss", "tenant")


def test_redis_settings_nested_mean_the_same_as_flat() -> None:
    fields = "url: 'redis://r:6379/1', fail_open: false, pool_size: 8"
    flat = parse_settings(MOCK_ONLY + f"state: {{backend: redis, {fields}}}\n", {})
    nested = parse_settings(MOCK_ONLY + f"state: {{backend: redis, redis: {{{fields}}}}}\n", {})
    for settings in (flat, nested):
        assert settings.state.backend == "redis"
        assert (settings.state.url, settings.state.fail_open, settings.state.pool_size) == (
            "redis://r:6379/1",
            False,
            8,
        )


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (
            "auth: {mode: jwt, jwks_url: 'http://a/k', jwt: {jwks_url: 'http://b/k'}}",
            r"^auth: jwt\.jwks_url and jwks_url differ; give it once$",
        ),
        (
            "state: {backend: redis, fail_open: true, redis: {fail_open: false}}",
            r"^state: redis\.fail_open and fail_open differ; give it once$",
        ),
        ("auth: {mode: jwt, jwt: {jwks: 'http://a/k'}}", r"auth\.jwt\.jwks: unknown key"),
        ("state: {redis: {host: r}}", r"^state\.redis\.host: unknown key$"),
        ("auth: {mode: jwt, jwt: {issuer: iss}}", r"auth\.jwt\.jwks_url: required"),
    ],
)
def test_nested_sections_are_checked(section: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        parse_settings(MOCK_ONLY + section + "\n", {})


def test_a_key_given_both_ways_with_one_value_is_accepted() -> None:
    text = MOCK_ONLY + "state: {backend: redis, url: 'redis://r/0', redis: {url: 'redis://r/0'}}\n"
    assert parse_settings(text, {}).state.url == "redis://r/0"


def test_server_overrides_are_checked_as_the_file_is() -> None:
    settings = load_settings(None)
    assert settings.with_server(port=19101, workers=None).server.port == 19101
    with pytest.raises(ConfigError, match=r"^server\.port: .*65535"):
        settings.with_server(port=70000)
    with pytest.raises(ConfigError, match=r"^server\.workers: .*1"):
        settings.with_server(workers=0)


def test_embedded_default_keeps_no_spend_log() -> None:
    assert load_settings(None).spend.enabled is False
