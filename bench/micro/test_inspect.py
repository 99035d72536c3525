"""Request inspection and cache keys: one native call against parsing and walking in Python."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import orjson
from corpus import chat_body, chat_payload

from conftest import Measure
from sidegate import _native
from sidegate.inspection import inspect_request
from sidegate.tokens import Tokenizer

BODY = chat_body(4096)


def python_walk(body: bytes) -> tuple[Any, ...]:
    """What inspection costs in Python: parse, validate, count each field, hash."""
    payload = orjson.loads(body)
    if not isinstance(payload, dict) or not isinstance(payload.get("model"), str):
        raise ValueError("bad body")
    tokenizer = Tokenizer.for_model(payload["model"])
    tokens = 3
    for message in payload["messages"]:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ValueError("bad message")
        tokens += 3
        for key, value in message.items():
            tokens += tokenizer.count(value if isinstance(value, str) else str(value))
            tokens += key == "name"
    skip = {"model", "user", "metadata", "stream", "stream_options", "store"}
    canonical = orjson.dumps(
        {k: v for k, v in payload.items() if k not in skip}, option=orjson.OPT_SORT_KEYS
    )
    digest = hashlib.blake2b(canonical, digest_size=16).hexdigest()
    return payload["model"], payload.get("stream"), payload.get("max_tokens"), tokens, digest


def test_orjson_loads(measure: Measure) -> None:
    measure("inspect-4KB", "orjson.loads", orjson.loads, BODY)


def test_orjson_python_walk(measure: Measure) -> None:
    measure("inspect-4KB", "orjson+python-walk", python_walk, BODY)


def test_inspect(measure: Measure) -> None:
    """A body whose texts were seen before (system prompt, resent history): memo hits."""
    facts = measure("inspect-4KB", "inspect", inspect_request, BODY, "chat")
    assert facts.prompt_tokens > 500


def test_inspect_first_sight(measure: Measure) -> None:
    """A body never seen before: every text is counted (the memo is off)."""
    capacity = _native.set_prompt_memo_capacity(0)
    try:
        facts = measure("inspect-4KB", "inspect-first-sight", inspect_request, BODY, "chat")
    finally:
        _native.set_prompt_memo_capacity(capacity)
    assert facts.prompt_tokens > 500


def test_inspect_without_counting(measure: Measure) -> None:
    measure(
        "inspect-4KB",
        "inspect-no-count",
        lambda b: inspect_request(b, "chat", count_tokens=False),
        BODY,
    )


def test_cache_key_sha256_json_dumps(measure: Measure) -> None:
    payload = chat_payload(4096)

    def key(body: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    measure("cache-key-4KB", "sha256+json.dumps", key, payload)


def test_cache_key_native(measure: Measure) -> None:
    measure("cache-key-4KB", "native", _native.cache_key, BODY, "chat")
