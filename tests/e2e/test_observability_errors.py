"""What a refused or failed request leaves behind: one complete access line (with the error's
code, never its text), counts under the upstream it went to, and the gateway's headers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from tests.e2e.procs import ACCESS_LINE_FIELDS, Process, free_port, metric_value, scrape

KEY, TIGHT_KEY, BROKE_KEY = "sk-errors-acme", "sk-errors-tight", "sk-errors-broke"
SECRET = "the vault code is heron-77"
CONFIG = """
server: {{http: {http}, max_body_bytes: 4096}}
upstreams:
  local: {{endpoints: ["{upstream}/v1"]}}
  gone: {{endpoints: ["http://127.0.0.1:{dead}/v1"]}}
models:
  gpt-4o-mini: {{upstream: local, upstream_model: mock-gpt, price_per_1k: {{input: 1, output: 1}}}}
  gone-model: {{upstream: gone, upstream_model: mock-gpt}}
tenants:
  acme: {{keys: ["{key}"], plan: rich}}
  tight: {{keys: ["{tight}"], plan: tight}}
  broke: {{keys: ["{broke}"], plan: broke}}
plans:
  rich: {{daily_budget_usd: 5}}
  tight: {{rpm: 1, burst: 1}}
  broke: {{daily_budget_usd: 0}}
spend: {{enabled: false}}
cache: {{enabled: true}}
"""


def _gateway(
    spawn: Callable[..., Process], write_config: Callable[[str], Path], upstream: str, http: str
) -> Process:
    text = CONFIG.format(
        http=http,
        upstream=upstream,
        dead=free_port(),
        key=KEY,
        tight=TIGHT_KEY,
        broke=BROKE_KEY,
    )
    return spawn("serve", "--config", str(write_config(text)))


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _refused(call: Callable[[], Any]) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as caught:
        call()
    return caught.value


def _lines(gateway: Process) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in gateway.output().splitlines() if line.strip()]


@pytest.mark.parametrize("http", ["lean", "aiohttp"])
def test_each_refused_or_failed_request_gives_one_complete_access_line(
    spawn: Callable[..., Process],
    mock_upstream: Process,
    write_config: Callable[[str], Path],
    sdk: Callable[[Process, str], openai.OpenAI],
    http: str,
) -> None:
    gateway = _gateway(spawn, write_config, mock_upstream.url, http)

    def client(key: str) -> openai.OpenAI:
        return sdk(gateway, key)

    acme, tight = client(KEY), client(TIGHT_KEY)
    tight.chat.completions.create(model="gpt-4o-mini", messages=_user("first"))
    create = acme.chat.completions.create
    errors = {
        "invalid_api_key": _refused(
            lambda: client("sk-not-a-key").chat.completions.create(
                model="gpt-4o-mini", messages=_user(SECRET)
            )
        ),
        "model_not_found": _refused(lambda: create(model="no-such-model", messages=_user(SECRET))),
        "rate_limit_exceeded": _refused(
            lambda: tight.chat.completions.create(model="gpt-4o-mini", messages=_user(SECRET))
        ),
        "insufficient_quota": _refused(
            lambda: client(BROKE_KEY).chat.completions.create(
                model="gpt-4o-mini", messages=_user(SECRET)
            )
        ),
        "invalid_request_error": _refused(
            lambda: create(model="gpt-4o-mini", messages=SECRET)  # type: ignore[arg-type]
        ),
        "upstream_error": _refused(
            lambda: create(model="gpt-4o-mini", messages=_user(f"!status 503 {SECRET}"))
        ),
        "upstream_connect_error": _refused(
            lambda: create(model="gone-model", messages=_user(SECRET))
        ),
        "request_too_large": _refused(
            lambda: create(model="gpt-4o-mini", messages=_user(SECRET + " " * 5000))
        ),
    }
    expected = {
        "invalid_api_key": (401, "-", "-"),
        "model_not_found": (404, "acme", "-"),
        "rate_limit_exceeded": (429, "tight", "-"),
        "insufficient_quota": (429, "broke", "-"),
        "invalid_request_error": (400, "acme", "-"),
        "upstream_error": (503, "acme", "local"),  # it went to the upstream, which failed
        "upstream_connect_error": (502, "acme", "gone"),
        "request_too_large": (413, "acme", "-"),
    }
    for code, error in errors.items():
        # Every proxied answer, errors included, says how long it spent inside Sidegate.
        assert float(error.response.headers["x-sidegate-overhead-ms"]) >= 0, code
        assert error.response.headers["x-cache"] == "miss"
        assert error.status_code == expected[code][0], code
    gateway.stop()
    output = gateway.output()
    assert SECRET not in output
    lines = _lines(gateway)
    assert not [line for line in lines if str(line.get("message")).startswith("request failed")]
    for code, error in errors.items():
        request_id = error.response.headers["x-request-id"]
        access = [
            line
            for line in lines
            if line.get("request_id") == request_id and line["logger"] == "sidegate.access"
        ]
        assert len(access) == 1, (code, access)
        (line,) = access
        assert ACCESS_LINE_FIELDS <= line.keys(), code
        status, tenant, upstream = expected[code]
        assert (line["status"], line["tenant"], line["upstream"]) == (status, tenant, upstream)
        assert line["error"] == code
        assert line["cost_usd"] == 0 and line["output_tokens"] == 0
    (rejected,) = [line for line in lines if line.get("event") == "key_rejected"]
    assert rejected["request_id"] == errors["invalid_api_key"].response.headers["x-request-id"]


def test_counts_name_the_upstream_that_failed_and_count_a_rejected_key_once(
    spawn: Callable[..., Process],
    mock_upstream: Process,
    write_config: Callable[[str], Path],
    sdk: Callable[[Process, str], openai.OpenAI],
) -> None:
    gateway = _gateway(spawn, write_config, mock_upstream.url, "lean")
    acme = sdk(gateway, KEY)
    with pytest.raises(openai.InternalServerError):
        acme.chat.completions.create(model="gpt-4o-mini", messages=_user("!status 503 x"))
    with pytest.raises(openai.APIStatusError):
        acme.chat.completions.create(model="gone-model", messages=_user("x"))
    with pytest.raises(openai.AuthenticationError):
        sdk(gateway, "sk-not-a-key").chat.completions.create(
            model="gpt-4o-mini", messages=_user("x")
        )
    text = scrape(gateway)
    failed = {"model": "gpt-4o-mini", "tenant": "acme", "status": "503"}
    assert metric_value(text, "llm_requests_total", **failed, upstream="local") == 1
    assert metric_value(text, "llm_requests_total", **failed, upstream="-") is None
    gone = {"model": "gone-model", "status": "502", "upstream": "gone"}
    assert metric_value(text, "llm_requests_total", **gone) == 1
    assert metric_value(text, "llm_requests_total", tenant="-", status="401") == 1
    # A failed upstream answered nothing: no tokens, no cost.
    assert metric_value(text, "llm_tokens_total", model="gpt-4o-mini") is None
    assert metric_value(text, "llm_cost_usd_total", model="gpt-4o-mini") is None


def test_budgets_show_from_start_up_and_a_cache_hit_has_no_upstream_time(
    spawn: Callable[..., Process],
    mock_upstream: Process,
    write_config: Callable[[str], Path],
    sdk: Callable[[Process, str], openai.OpenAI],
) -> None:
    gateway = _gateway(spawn, write_config, mock_upstream.url, "lean")
    before = scrape(gateway)
    # Before any request: each budgeted tenant's whole budget; none for a tenant without one.
    assert metric_value(before, "llm_budget_remaining_usd", tenant="acme") == 5
    assert metric_value(before, "llm_budget_remaining_usd", tenant="broke") == 0
    assert metric_value(before, "llm_budget_remaining_usd", tenant="tight") is None
    acme = sdk(gateway, KEY)
    for _ in range(2):
        raw = acme.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=_user("same question"), temperature=0
        )
    assert raw.headers["x-cache"] == "hit"
    text = scrape(gateway)
    upstream = "llm_upstream_duration_seconds_count"
    assert metric_value(text, upstream, model="gpt-4o-mini", upstream="local") == 1
    assert 'upstream="cache"' not in text
    spent = metric_value(text, "llm_budget_remaining_usd", tenant="acme")
    assert spent is not None and 4.9 < spent < 5


def test_with_workers_an_endpoint_marked_down_by_one_shows_down(
    spawn: Callable[..., Process],
    mock_upstream: Process,
    write_config: Callable[[str], Path],
) -> None:
    # No limits: with the memory state, each worker would hold its own.
    config = f"""
    upstreams:
      local: {{endpoints: ["{mock_upstream.url}/v1"]}}
      gone: {{endpoints: ["http://127.0.0.1:{free_port()}/v1"]}}
    models:
      gone-model: {{upstream: gone, upstream_model: mock-gpt}}
    spend: {{enabled: false}}
    """
    gateway = spawn("serve", "--config", str(write_config(config)), "--workers", "2")
    with (
        openai.OpenAI(base_url=gateway.url + "/v1", api_key="none", max_retries=0) as client,
        pytest.raises(openai.APIStatusError),
    ):
        client.chat.completions.create(model="gone-model", messages=_user("x"))
    for _ in range(8):  # whichever worker answers, the other one's 0 is not hidden
        text = scrape(gateway)
        assert metric_value(text, "llm_upstream_up", upstream="gone") == 0
        assert metric_value(text, "llm_upstream_up", upstream="local") == 1
