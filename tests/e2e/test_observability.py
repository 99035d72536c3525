"""Metrics, logs and events of a real gateway after real requests: values, not just names."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import openai
import orjson
import pytest

from sidegate.tokens import Tokenizer
from tests.e2e.procs import ACCESS_LINE_FIELDS, Process, http_get, metric_value, scrape

ACME_KEY = "sk-acme-observability-key"
BETA_KEY = "sk-beta-observability-key"
SECRET_PROMPT = "the launch code is walrus-42"
PRICE_IN, PRICE_OUT = 0.5, 2.0  # per 1k tokens: large so costs are far from rounding

CONFIG = """
upstreams:
  local: {{endpoints: ["{upstream}/v1"]}}
models:
  gpt-4o-mini:
    upstream: local
    upstream_model: mock-gpt
    price_per_1k: {{input: {price_in}, output: {price_out}}}
tenants:
  acme: {{keys: ["{acme}"]}}
  beta: {{keys: ["{beta}"], plan: tight}}
plans:
  tight: {{rpm: 1, burst: 1}}
spend: {{enabled: false}}
cache: {{enabled: false}}
telemetry: {{tenant_label: {tenant_label}, metrics_token: {token}}}
"""


def _config(upstream: str, *, tenant_label: bool = True, token: str = "null") -> str:
    return CONFIG.format(
        upstream=upstream,
        price_in=PRICE_IN,
        price_out=PRICE_OUT,
        acme=ACME_KEY,
        beta=BETA_KEY,
        tenant_label=str(tenant_label).lower(),
        token=token,
    )


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_metrics_hold_the_values_of_real_requests(
    spawn: Callable[..., Process],
    mock_upstream: Process,
    write_config: Callable[[str], Path],
    sdk: Callable[[Process, str], openai.OpenAI],
) -> None:
    gateway = spawn("serve", "--config", str(write_config(_config(mock_upstream.url))))
    acme = sdk(gateway, ACME_KEY)
    answers = [
        acme.chat.completions.create(model="gpt-4o-mini", messages=user("count these words")),
        acme.chat.completions.create(model="gpt-4o-mini", messages=user(SECRET_PROMPT)),
    ]
    chunks = list(
        acme.chat.completions.create(
            model="gpt-4o-mini",
            messages=user("streamed answer here"),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    streamed = chunks[-1].usage
    assert streamed is not None
    raw = acme.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=user("headers please")
    )
    answers.append(raw.parse())
    overhead_ms = float(raw.headers["x-sidegate-overhead-ms"])
    assert overhead_ms >= 0
    with pytest.raises(openai.AuthenticationError):
        sdk(gateway, "sk-revoked-key-1234").models.list()
    with pytest.raises(openai.AuthenticationError):
        sdk(gateway, "sk-revoked-key-1234").chat.completions.create(
            model="gpt-4o-mini", messages=user("hi")
        )
    with pytest.raises(openai.NotFoundError):
        acme.chat.completions.create(model="no-such-model", messages=user("hi"))

    usages = [a.usage for a in answers if a.usage is not None] + [streamed]
    input_tokens = sum(u.prompt_tokens for u in usages)
    output_tokens = sum(u.completion_tokens for u in usages)
    text = scrape(gateway)
    acme_ok = {"model": "gpt-4o-mini", "tenant": "acme", "status": "200", "upstream": "local"}
    assert metric_value(text, "llm_requests_total", **acme_ok) == 4
    assert metric_value(text, "llm_requests_total", model="no-such-model", status="404") == 1
    # Two rejected keys never reach the pipeline and are counted all the same.
    assert metric_value(text, "llm_requests_total", tenant="-", status="401") == 2
    tokens = {"model": "gpt-4o-mini", "tenant": "acme"}
    assert metric_value(text, "llm_tokens_total", **tokens, token_type="input") == input_tokens
    assert metric_value(text, "llm_tokens_total", **tokens, token_type="output") == output_tokens
    cost = metric_value(text, "llm_cost_usd_total", **tokens)
    expected = (input_tokens * PRICE_IN + output_tokens * PRICE_OUT) / 1000
    assert cost == pytest.approx(expected)
    assert metric_value(text, "llm_request_duration_seconds_count", model="gpt-4o-mini") == 4
    assert metric_value(text, "llm_time_to_first_token_seconds_count", model="gpt-4o-mini") == 1
    # With the 404 and the rejected chat request (both proxied answers; /v1/models is not).
    assert metric_value(text, "llm_proxy_overhead_seconds_count") == 6
    upstream = {"model": "gpt-4o-mini", "upstream": "local"}
    assert metric_value(text, "llm_upstream_duration_seconds_count", **upstream) == 4
    assert metric_value(text, "llm_active_requests", model="gpt-4o-mini") == 0
    assert metric_value(text, "llm_upstream_up", upstream="local") == 1
    # The OpenTelemetry GenAI client instruments, under the OTel Prometheus exporter's names.
    genai = {
        "gen_ai_operation_name": "chat",
        "gen_ai_provider_name": "openai",
        "gen_ai_request_model": "gpt-4o-mini",
        "gen_ai_response_model": "mock-gpt",
    }
    usage = "gen_ai_client_token_usage"
    assert metric_value(text, f"{usage}_sum", **genai, gen_ai_token_type="input") == input_tokens
    assert metric_value(text, f"{usage}_count", **genai, gen_ai_token_type="output") == 4
    assert metric_value(text, "gen_ai_client_operation_duration_seconds_count", **genai) == 4
    first_chunk = "gen_ai_client_operation_time_to_first_chunk_seconds_count"
    assert metric_value(text, first_chunk, **genai) == 1

    gateway.stop()
    _check_log_lines(gateway.output(), input_tokens, expected)


def _check_log_lines(output: str, input_tokens: int, cost: float) -> None:
    assert SECRET_PROMPT not in output
    assert ACME_KEY not in output
    assert "sk-revoked-key-1234" not in output
    lines = [orjson.loads(line) for line in output.splitlines() if line.strip()]
    requests = [line for line in lines if line.get("message") == "request"]
    assert len(requests) == 6  # the rejected chat request's line too
    for line in requests:
        assert ACCESS_LINE_FIELDS <= line.keys()
    served = [line for line in requests if line["status"] == 200]
    assert sum(line["input_tokens"] for line in served) == input_tokens
    assert sum(line["cost_usd"] for line in served) == pytest.approx(cost)
    assert {line["tenant"] for line in served} == {"acme"}
    refused = [line for line in requests if line["status"] == 401]
    assert [(line["tenant"], line["error"], line["input_tokens"]) for line in refused] == [
        ("-", "invalid_api_key", 0)
    ]
    rejected = [line for line in lines if line.get("event") == "key_rejected"]
    assert len(rejected) == 2
    assert rejected[0]["key_id"] and rejected[0]["code"] == "invalid_api_key"


def test_overhead_leaves_out_the_time_spent_waiting_on_the_upstream(
    spawn: Callable[..., Process],
    mock_upstream: Process,
    write_config: Callable[[str], Path],
    sdk: Callable[[Process, str], openai.OpenAI],
) -> None:
    gateway = spawn("serve", "--config", str(write_config(_config(mock_upstream.url))))
    raw = sdk(gateway, ACME_KEY).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=user("!sleep 1000 slow")
    )
    # The upstream took a second; that second is not Sidegate's (a behaviour, not a benchmark).
    assert float(raw.headers["x-sidegate-overhead-ms"]) < 1000
    text = scrape(gateway)
    waited = metric_value(text, "llm_upstream_duration_seconds_sum", upstream="local")
    assert waited is not None and waited >= 1.0
    overhead = metric_value(text, "llm_proxy_overhead_seconds_sum")
    assert overhead is not None and overhead < 1.0


def test_a_streams_pauses_between_events_are_the_upstreams_time(
    spawn: Callable[..., Process],
    paced_upstream: Process,
    write_config: Callable[[str], Path],
    sdk: Callable[[Process, str], openai.OpenAI],
) -> None:
    gateway = spawn("serve", "--config", str(write_config(_config(paced_upstream.url))))
    stream = sdk(gateway, ACME_KEY).chat.completions.create(
        model="gpt-4o-mini", messages=user("word " * 60), stream=True
    )
    assert len([chunk for chunk in stream]) > 60  # paced: the stream takes over a second
    text = scrape(gateway)
    waited = metric_value(text, "llm_upstream_duration_seconds_sum", upstream="local")
    assert waited is not None and waited >= 1.0
    overhead = metric_value(text, "llm_proxy_overhead_seconds_sum")
    assert overhead is not None and overhead < 0.5


def test_rate_limited_requests_log_an_event_with_the_tenant(
    spawn: Callable[..., Process],
    mock_upstream: Process,
    write_config: Callable[[str], Path],
    sdk: Callable[[Process, str], openai.OpenAI],
) -> None:
    gateway = spawn("serve", "--config", str(write_config(_config(mock_upstream.url))))
    beta = sdk(gateway, BETA_KEY)
    first = beta.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=user("one")
    )
    assert first.headers["x-ratelimit-limit-requests"] == "1"
    assert first.headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(openai.RateLimitError):
        beta.chat.completions.create(model="gpt-4o-mini", messages=user("two"))
    text = scrape(gateway)
    assert metric_value(text, "llm_requests_total", tenant="beta", status="429") == 1
    gateway.stop()
    lines = [orjson.loads(line) for line in gateway.output().splitlines() if line.strip()]
    events = [line for line in lines if line.get("event") == "rate_limited"]
    assert len(events) == 1
    assert events[0]["tenant"] == "beta"
    assert events[0]["code"] == "rate_limit_exceeded"
    # The limit as llm_rate_limited_total names it, so a log line and a series can be matched.
    assert events[0]["limit"] == "requests"
    assert metric_value(text, "llm_rate_limited_total", tenant="beta", limit="requests") == 1


def test_tenant_label_can_be_turned_off(
    spawn: Callable[..., Process],
    mock_upstream: Process,
    write_config: Callable[[str], Path],
    sdk: Callable[[Process, str], openai.OpenAI],
) -> None:
    config = write_config(_config(mock_upstream.url, tenant_label=False))
    gateway = spawn("serve", "--config", str(config))
    sdk(gateway, ACME_KEY).chat.completions.create(model="gpt-4o-mini", messages=user("a"))
    text = scrape(gateway)
    assert metric_value(text, "llm_requests_total", tenant="-", status="200") == 1
    assert 'tenant="acme"' not in text


def test_metrics_may_require_a_bearer_token(
    spawn: Callable[..., Process], mock_upstream: Process, write_config: Callable[[str], Path]
) -> None:
    config = write_config(_config(mock_upstream.url, token="scrape-me"))
    gateway = spawn("serve", "--config", str(config))
    status, body = http_get(gateway.url + "/metrics")
    assert status == 401
    assert orjson.loads(body)["error"]["type"] == "authentication_error"
    status, _ = http_get(gateway.url + "/metrics", {"Authorization": "Bearer wrong"})
    assert status == 401
    # A wrong scrape token is not a rejected API key.
    assert metric_value(scrape(gateway, "scrape-me"), "llm_requests_total", status="401") is None
    assert "# TYPE llm_requests_total counter" in scrape(gateway, "scrape-me")


def test_workers_share_one_set_of_totals(
    spawn: Callable[..., Process],
    mock_upstream: Process,
    write_config: Callable[[str], Path],
) -> None:
    # No plan: per-process limits would make the gateway refuse several workers.
    config = write_config(_config(mock_upstream.url).replace("plan: tight", ""))
    gateway = spawn("serve", "--config", str(config), "--workers", "2")
    sent = 24
    for _ in range(sent):
        # A client (and so a connection) per request, so the kernel spreads them over workers.
        with openai.OpenAI(base_url=gateway.url + "/v1", api_key=ACME_KEY, max_retries=0) as client:
            client.chat.completions.create(model="gpt-4o-mini", messages=user("spread"))
    labels = {"model": "gpt-4o-mini", "tenant": "acme", "status": "200"}
    for _ in range(8):  # whichever worker answers a scrape sums every worker
        text = scrape(gateway)
        assert metric_value(text, "llm_requests_total", **labels) == sent
        assert metric_value(text, "llm_proxy_overhead_seconds_count") == sent
        assert metric_value(text, "llm_active_requests", model="gpt-4o-mini") == 0


def test_a_prompt_of_many_kilobytes_is_served_and_counted(
    spawn: Callable[..., Process],
    mock_upstream: Process,
    write_config: Callable[[str], Path],
    sdk: Callable[[Process, str], openai.OpenAI],
) -> None:
    # Over the size inspected inline: counted off the event loop, and counted the same.
    messages = user("Grüße, 你好 " * 20_000 + "a" * 50_000)
    gateway = spawn("serve", "--config", str(write_config(_config(mock_upstream.url))))
    completion = sdk(gateway, ACME_KEY).chat.completions.create(
        model="gpt-4o-mini", messages=messages
    )
    expected = Tokenizer("o200k_base").count_chat(messages)
    assert completion.usage is not None and completion.usage.prompt_tokens == expected
    gateway.stop()
    lines = [orjson.loads(line) for line in gateway.output().splitlines() if line.strip()]
    served = [line for line in lines if line.get("message") == "request"]
    assert [line["input_tokens"] for line in served] == [expected]
