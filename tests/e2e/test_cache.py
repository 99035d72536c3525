"""The exact response cache end to end: real gateways (memory and Redis backends), a real
mock upstream and a real redis-server, driven by the official openai SDK."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.e2e.procs import Process, RedisServer, free_port, http_get, metric_value

KEYS = {
    "acme": "sk-acme-cache-key",
    "globex": "sk-globex-cache-key",
    "limited": "sk-limited-cache-key",
}

CONFIG = """
upstreams:
  local: {{provider: openai, endpoints: ["{upstream}/v1"], timeout_seconds: 5}}
  dead: {{provider: openai, endpoints: ["http://127.0.0.1:{dead}/v1"]}}
models:
  gpt-4o-mini:
    upstream: local
    upstream_model: mock-gpt
    price_per_1k: {{input: 0.001, output: 0.002}}
  text-embedding-3-small: {{upstream: local}}
  gpt-3.5-turbo-instruct: {{upstream: local}}
  backup: {{upstream: local, upstream_model: backup-gpt}}
  flaky: {{upstream: dead, fallbacks: [backup]}}
  nowhere: {{upstream: dead}}
plans:
  tiny: {{rpm: 2, burst: 2}}
tenants:
  acme: {{keys: ["{acme}"]}}
  globex: {{keys: ["{globex}"]}}
  limited: {{plan: tiny, keys: ["{limited}"]}}
state: {{backend: memory, url: "{redis}"}}
cache: {cache}
"""


@dataclass
class Gateway:
    process: Process

    def client(self, tenant: str = "acme") -> openai.OpenAI:
        return openai.OpenAI(base_url=self.process.url + "/v1", api_key=KEYS[tenant], max_retries=0)

    def metric(self, name: str, **labels: str) -> float:
        status, body = http_get(self.process.url + "/metrics")
        assert status == 200
        return metric_value(body.decode(), name, **labels) or 0.0

    def cache_results(self) -> tuple[float, float]:
        hits = self.metric("llm_cache_requests_total", cache_type="exact", result="hit")
        misses = self.metric("llm_cache_requests_total", cache_type="exact", result="miss")
        return hits, misses


Start = Callable[..., Gateway]


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def start_gateway(
    backend: str,
    request: pytest.FixtureRequest,
    mock_upstream: Process,
    spawn: Callable[..., Process],
    write_config: Callable[[str], Path],
) -> Start:
    """Start a gateway with the test's cache backend; extra keyword args go into `cache:`."""
    redis_url = "redis://127.0.0.1:1/0"
    if backend == "redis":
        redis_url = request.getfixturevalue("redis_server").url

    def _start(**cache: Any) -> Gateway:
        # A generous bound: a loaded test machine must not turn slow Redis calls into misses.
        options = {"backend": backend, "timeout_seconds": 2, **cache}
        text = CONFIG.format(
            upstream=mock_upstream.url,
            dead=free_port(),
            redis=redis_url,
            cache="{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in options.items()) + "}",
            **KEYS,
        )
        return Gateway(spawn("serve", "--config", str(write_config(text))))

    return _start


def _yaml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def ask(client: openai.OpenAI, text: str, **options: Any) -> tuple[str, str]:
    """(x-cache, reply text) of one deterministic chat request."""
    options.setdefault("temperature", 0)
    raw = client.chat.completions.with_raw_response.create(
        model=options.pop("model", "gpt-4o-mini"), messages=user(text), **options
    )
    return raw.headers["x-cache"], raw.parse().choices[0].message.content or ""


def ask_streaming(client: openai.OpenAI, text: str, **options: Any) -> tuple[str, str, Any]:
    """(x-cache, streamed text, usage or None) of one deterministic streamed chat request."""
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=user(text), temperature=0, stream=True, **options
    )
    with raw.parse() as stream:
        chunks = list(stream)
    text_out = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = chunks[-1].usage if chunks and not chunks[-1].choices else None
    return raw.headers["x-cache"], text_out, usage


def test_a_repeat_is_a_hit_with_no_upstream_call_and_no_cost(start_gateway: Start) -> None:
    gateway = start_gateway()

    def account() -> tuple[float, float, float]:
        """(upstream calls, cost, output tokens) so far."""
        labels = {"model": "gpt-4o-mini"}
        return (
            gateway.metric("llm_upstream_duration_seconds_count", upstream="local", **labels),
            gateway.metric("llm_cost_usd_total", tenant="acme", **labels),
            gateway.metric("llm_tokens_total", tenant="acme", token_type="output", **labels),
        )

    with gateway.client() as client:
        first = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=user("Cache me if you can."), temperature=0
        )
        calls, cost, tokens = account()
        second = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=user("Cache me if you can."), temperature=0
        )
        assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit")
        one, two = first.parse(), second.parse()
        assert two.choices[0].message.content == "Cache me if you can."
        assert two.model_dump() == one.model_dump()
        assert second.headers["x-request-id"] != first.headers["x-request-id"]
        # No upstream call, no cost, but the replayed answer's tokens are accounted.
        assert one.usage is not None
        assert account() == (calls, cost, tokens + one.usage.completion_tokens)
        assert gateway.cache_results() == (1, 1)
        # A hit waited on no upstream: it adds no upstream time, under any upstream label.
        lookups = gateway.metric(
            "llm_upstream_duration_seconds_count", model="gpt-4o-mini", upstream="cache"
        )
        assert lookups == 0
        # Sampled requests (no temperature) are never served from the cache.
        assert ask(client, "Sampled", temperature=None) == ("miss", "Sampled")
        assert ask(client, "Sampled", temperature=None) == ("miss", "Sampled")
        assert account()[0] == calls + 2
    assert gateway.cache_results() == (1, 1)


def test_a_hit_still_counts_toward_the_request_rate(start_gateway: Start) -> None:
    gateway = start_gateway()
    with gateway.client("limited") as client:
        assert ask(client, "Rate me") == ("miss", "Rate me")
        assert ask(client, "Rate me") == ("hit", "Rate me")
        with pytest.raises(openai.RateLimitError) as limited:
            ask(client, "Rate me")
        assert limited.value.response.headers["x-cache"] == "miss"  # refused before the lookup


def test_embeddings_and_legacy_completions_hit_too(start_gateway: Start) -> None:
    gateway = start_gateway()
    with gateway.client() as client:
        vectors = []
        for _ in range(2):
            raw = client.embeddings.with_raw_response.create(
                model="text-embedding-3-small", input=["alpha", "beta"]
            )
            vectors.append((raw.headers["x-cache"], raw.parse().data[1].embedding))
        assert [v[0] for v in vectors] == ["miss", "hit"]
        assert vectors[0][1] == vectors[1][1]
        texts = []
        for _ in range(2):
            raw_text = client.completions.with_raw_response.create(
                model="gpt-3.5-turbo-instruct", prompt="Say this", temperature=0
            )
            texts.append((raw_text.headers["x-cache"], raw_text.parse().choices[0].text))
        assert texts == [("miss", "Say this"), ("hit", "Say this")]


def test_one_tenant_never_receives_anothers_entry(start_gateway: Start) -> None:
    gateway = start_gateway()
    with gateway.client("acme") as acme, gateway.client("globex") as globex:
        assert ask(acme, "Whose answer?") == ("miss", "Whose answer?")
        assert ask(globex, "Whose answer?") == ("miss", "Whose answer?")
        assert ask(globex, "Whose answer?") == ("hit", "Whose answer?")
        assert ask(acme, "Whose answer?") == ("hit", "Whose answer?")


def test_a_shared_namespace_is_an_explicit_choice(start_gateway: Start) -> None:
    gateway = start_gateway(shared_namespace="public-docs")
    with gateway.client("acme") as acme, gateway.client("globex") as globex:
        assert ask(acme, "Shared on purpose") == ("miss", "Shared on purpose")
        assert ask(globex, "Shared on purpose") == ("hit", "Shared on purpose")


def test_a_streamed_hit_replays_the_same_text(start_gateway: Start) -> None:
    gateway = start_gateway()
    text = "Streaming, then replaying: 你好 🤦🏼‍♂️ done."
    with gateway.client() as client:
        first = ask_streaming(client, text)
        assert first == ("miss", text, None)
        assert ask_streaming(client, text) == ("hit", text, None)
        cached, replayed, usage = ask_streaming(
            client, text, stream_options={"include_usage": True}
        )
        assert (cached, replayed) == ("hit", text)
        # A whole-answer client gets the same entry, with the usage the stream counted.
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=user(text), temperature=0
        )
        whole = raw.parse()
        assert raw.headers["x-cache"] == "hit"
        assert whole.choices[0].message.content == text
        assert whole.usage is not None and usage is not None
        assert usage.completion_tokens == whole.usage.completion_tokens > 0
        # The other way round: stored whole, replayed as a stream with several choices.
        assert ask(client, "two of them", n=2) == ("miss", "two of them")
        raw_stream = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=user("two of them"), temperature=0, n=2, stream=True
        )
        with raw_stream.parse() as stream:
            by_choice: dict[int, str] = {}
            for chunk in stream:
                for choice in chunk.choices:
                    by_choice[choice.index] = by_choice.get(choice.index, "") + (
                        choice.delta.content or ""
                    )
        assert raw_stream.headers["x-cache"] == "hit"
        assert by_choice == {0: "two of them", 1: "two of them"}


def test_a_cut_or_failed_answer_is_never_stored(start_gateway: Start) -> None:
    gateway = start_gateway()
    cut = "!drop 3 this stream will be cut short before it ends"
    with gateway.client() as client:
        for _ in range(2):
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=user(cut), temperature=0, stream=True
            )
            assert raw.headers["x-cache"] == "miss"
            with pytest.raises(openai.APIError), raw.parse() as stream:
                list(stream)
        for _ in range(2):
            with pytest.raises(openai.BadRequestError):
                ask(client, "!status 400 refused")
    assert gateway.cache_results() == (0, 4)


def test_errors_say_x_cache_too(start_gateway: Start) -> None:
    gateway = start_gateway()
    with gateway.client() as client:
        with pytest.raises(openai.APIStatusError) as unreachable:
            ask(client, "Anyone there?", model="nowhere")
        assert unreachable.value.status_code == 502
        assert unreachable.value.response.headers["x-cache"] == "miss"
        with pytest.raises(openai.BadRequestError) as refused:
            ask(client, "!status 400 no")
        assert refused.value.response.headers["x-cache"] == "miss"


def test_a_fallbacks_answer_is_not_stored_under_the_primarys_key(start_gateway: Start) -> None:
    gateway = start_gateway()
    with gateway.client() as client:
        assert ask(client, "Who answered?", model="flaky") == ("miss", "Who answered?")
        assert ask(client, "Who answered?", model="flaky") == ("miss", "Who answered?")
    assert gateway.cache_results() == (0, 2)


@pytest.mark.parametrize("backend", ["memory"], indirect=True)
def test_the_rule_can_be_widened_to_sampled_requests(start_gateway: Start) -> None:
    gateway = start_gateway(cache_nondeterministic=True)
    with gateway.client() as client:
        assert ask(client, "Frozen sample", temperature=0.9) == ("miss", "Frozen sample")
        assert ask(client, "Frozen sample", temperature=0.9) == ("hit", "Frozen sample")
        assert ask(client, "Frozen sample", temperature=0.8)[0] == "miss"  # in the key


def test_no_store_and_no_cache(start_gateway: Start) -> None:
    gateway = start_gateway()
    with gateway.client() as client:
        no_store = {"extra_headers": {"Cache-Control": "no-store"}}
        no_cache = {"extra_headers": {"Cache-Control": "no-cache"}}
        assert ask(client, "Opt out", **no_store)[0] == "miss"
        assert ask(client, "Opt out")[0] == "miss"  # nothing was stored
        assert ask(client, "Opt out", **no_store)[0] == "hit"  # no-store still looks up
        assert ask(client, "Opt out", **no_cache)[0] == "miss"  # no-cache skips the lookup
        assert ask(client, "Opt out")[0] == "hit"


def test_entries_expire_after_the_ttl(start_gateway: Start) -> None:
    gateway = start_gateway(ttl_seconds=2)
    with gateway.client() as client:
        assert ask(client, "Short lived")[0] == "miss"
        assert ask(client, "Short lived")[0] == "hit"
        time.sleep(2.2)
        assert ask(client, "Short lived")[0] == "miss"


def test_the_least_recently_used_entry_is_evicted_at_max_entries(start_gateway: Start) -> None:
    gateway = start_gateway(max_entries=2)
    with gateway.client() as client:
        for text in ("one", "two"):
            assert ask(client, text)[0] == "miss"
        assert ask(client, "one")[0] == "hit"  # "two" is now the least recently used
        assert ask(client, "three")[0] == "miss"
        assert ask(client, "two")[0] == "miss"  # evicted (and stored again, evicting "one")
        assert ask(client, "three")[0] == "hit"


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
def test_a_second_replica_hits_what_the_first_stored(start_gateway: Start) -> None:
    first, second = start_gateway(), start_gateway()
    with first.client() as one, second.client() as two:
        assert ask(one, "Shared across replicas") == ("miss", "Shared across replicas")
        assert ask(two, "Shared across replicas") == ("hit", "Shared across replicas")
        big = "a long answer worth compressing " * 200
        assert ask(two, big) == ("miss", big)
        assert ask(one, big) == ("hit", big)
        with second.client("globex") as other_tenant:
            assert ask(other_tenant, "Shared across replicas")[0] == "miss"


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
def test_the_gateway_keeps_serving_while_redis_is_down(
    start_gateway: Start, redis_server: RedisServer
) -> None:
    gateway = start_gateway()
    with gateway.client() as client:
        assert ask(client, "Before the outage") == ("miss", "Before the outage")
        redis_server.stop()
        for _ in range(5):
            assert ask(client, "Before the outage") == ("miss", "Before the outage")
        assert ask_streaming(client, "During the outage") == ("miss", "During the outage", None)
        assert gateway.metric("llm_cache_requests_total", result="error") >= 1
        redis_server.start()
        deadline = time.monotonic() + 10
        while ask(client, "After the outage")[0] != "hit":
            assert time.monotonic() < deadline, "the cache never came back"
            time.sleep(0.2)
    log = gateway.process.output()
    assert log.count("Redis is unavailable") == 1
    assert log.count("Redis is back") == 1
