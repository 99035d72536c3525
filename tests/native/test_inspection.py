"""`inspect_request` from Python: the facts, the 400s, the cache key's meaning."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.loop_turns import counting_turns

from sidegate import _native
from sidegate.errors import InvalidRequestError
from sidegate.inspection import (
    INLINE_MAX_BYTES,
    RequestFacts,
    body_hash,
    inspect_request,
    inspect_request_off_loop,
)
from sidegate.tokens import Tokenizer


def chat_body(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    body.update(fields)
    return body


def facts(body: Any, endpoint: str = "chat", **kwargs: Any) -> Any:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return inspect_request(raw, endpoint, **kwargs)  # type: ignore[arg-type]


def test_a_chat_request_yields_every_fact() -> None:
    body = chat_body(
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=10,
        max_completion_tokens=20,
        n=3,
        temperature=0.5,
    )
    got = facts(body)
    assert (got.model, got.stream, got.include_usage) == ("gpt-4o-mini", True, True)
    assert (got.max_tokens, got.n, got.temperature) == (20, 3, 0.5)
    assert got.prompt_tokens == Tokenizer("o200k_base").count_chat(body["messages"])
    assert len(got.body_hash) == 32
    int(got.body_hash, 16)


def test_the_body_hash_is_skipped_when_no_cache_reads_it() -> None:
    body = chat_body(temperature=0)
    hashed, skipped = facts(body), facts(body, hash_body=False)
    assert hashed.body_hash == body_hash(orjson.dumps(body), "chat")
    assert skipped.body_hash is None
    assert (skipped.model, skipped.prompt_tokens) == (hashed.model, hashed.prompt_tokens)


def test_prompt_tokens_follow_the_model_or_the_given_encoding() -> None:
    text = "Counting in two encodings gives different answers: 你好, 世界!"
    body = chat_body(model="gpt-3.5-turbo", messages=[{"role": "user", "content": text}])
    cl100k = Tokenizer("cl100k_base").count_chat(body["messages"])
    o200k = Tokenizer("o200k_base").count_chat(body["messages"])
    assert cl100k != o200k
    assert facts(body).prompt_tokens == cl100k
    assert facts(body, encoding="o200k_base").prompt_tokens == o200k
    assert facts(body, count_tokens=False).prompt_tokens == 0


def test_tools_are_counted_like_count_chat() -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string", "description": "The city."},
                        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                    },
                },
            },
        }
    ]
    body = chat_body(tools=tools)
    tokenizer = Tokenizer("o200k_base")
    with_tools = tokenizer.count_chat(body["messages"], tools)
    assert with_tools > tokenizer.count_chat(body["messages"]) + 12
    assert facts(body).prompt_tokens == with_tools


def test_completions_and_embeddings_count_their_input() -> None:
    tokenizer = Tokenizer("o200k_base")
    prompt = {"model": "m", "prompt": ["one two", "three"]}
    expected = tokenizer.count("one two") + tokenizer.count("three")
    assert facts(prompt, "completions").prompt_tokens == expected
    assert facts({"model": "m", "input": [[1, 2, 3], [4]]}, "embeddings").prompt_tokens == 4


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        (b"", None),
        ({"messages": []}, "model"),
        ({"model": "", "messages": []}, "model"),
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": "hi"}, "messages"),
        ({"model": "m", "messages": [{"content": "no role"}]}, "messages.[0]"),
        ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages.[0].content"),
        (
            chat_body(stream=True, stream_options={"include_usage": "yes"}),
            "stream_options.include_usage",
        ),
        (chat_body(stream="yes"), "stream"),
        (chat_body(n=0), "n"),
        (chat_body(max_tokens=0), "max_tokens"),
        (chat_body(max_tokens=1.5), "max_tokens"),
        (chat_body(temperature="warm"), "temperature"),
        (chat_body(tools=[{"type": "function"}]), "tools.[0]"),
    ],
)
def test_malformed_bodies_are_invalid_requests(body: Any, param: str | None) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        facts(body)
    assert caught.value.status == 400
    assert caught.value.param == param
    assert caught.value.message


def test_a_json_error_says_where() -> None:
    with pytest.raises(InvalidRequestError, match=r"not valid JSON.*column"):
        facts(b'{"model": "m",}')


def test_a_json_error_quotes_nothing_of_the_prompt() -> None:
    # The message goes back to the client and into the logs, which never hold prompts.
    body = b'{"model": "m", "messages": [{"role": "user", "content": "pin 4242 hunter2\\q zebra"}]}'
    with pytest.raises(InvalidRequestError) as caught:
        facts(body)
    assert "column" in caught.value.message
    for quoted in ("4242", "hunter2", "zebra"):
        assert quoted not in caught.value.message


def test_same_meaning_gives_the_same_hash() -> None:
    body = chat_body(temperature=1, seed=7, tools=[{"type": "function", "function": {"name": "f"}}])
    spaced = json.dumps(dict(reversed(list(body.items()))), indent=2).encode()
    respelled = spaced.replace(b'"temperature": 1', b'"temperature": 1.0')
    assert respelled != spaced
    escaped = orjson.dumps(body).replace(b'"content":"hi"', b'"content":"\\u0068i"')
    assert escaped != orjson.dumps(body)
    noise = dict(body, user="u", metadata={"a": 1}, stream=True, store=False, model="other")
    variants = (body, spaced, respelled, escaped, noise, dict(body, top_k=None))
    hashes = {facts(b).body_hash for b in variants}
    assert len(hashes) == 1


ANSWER_CHANGING = {
    "messages": [{"role": "user", "content": "hello"}],
    "tools": [{"type": "function", "function": {"name": "g"}}],
    "tool_choice": "required",
    "response_format": {"type": "json_object"},
    "seed": 8,
    "temperature": 0.7,
    "top_p": 0.9,
    "stop": ["\n"],
    "logit_bias": {"50256": -100},
    "presence_penalty": 0.1,
    "frequency_penalty": 0.2,
    "n": 2,
    "max_tokens": 99,
    "reasoning_effort": "high",
}


@pytest.mark.parametrize(("field", "value"), ANSWER_CHANGING.items())
def test_answer_changing_fields_change_the_hash(field: str, value: Any) -> None:
    base = facts(chat_body()).body_hash
    assert facts(chat_body(**{field: value})).body_hash != base


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(extra=st.dictionaries(st.sampled_from(["stop", "seed", "x", "tools_extra"]), json_values))
def test_hash_ignores_member_order(extra: dict[str, Any]) -> None:
    body = chat_body(**extra)
    reordered = dict(reversed(list(body.items())))
    assert facts(body).body_hash == facts(reordered).body_hash


def test_facts_are_immutable_and_readable() -> None:
    got = facts(chat_body(max_tokens=5))
    assert "max_tokens=5" in repr(got) and "model='gpt-4o-mini'" in repr(got)
    with pytest.raises(AttributeError):
        got.model = "other"  # type: ignore[misc]
    built = RequestFacts("m", False, False, None, 1, None, 0, "00")
    assert (built.model, built.n, built.body_hash) == ("m", 1, "00")


def test_body_hash_alone_matches_inspection() -> None:
    raw = orjson.dumps(chat_body(seed=3))
    assert body_hash(raw, "chat") == facts(raw).body_hash
    with pytest.raises(InvalidRequestError):
        body_hash(b"{", "chat")


def test_a_deeply_nested_body_is_a_400_not_a_crash() -> None:
    with pytest.raises(InvalidRequestError, match="nested deeper"):
        facts(b'{"model": "m", "messages": ' + b"[" * 100_000)


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(st.text(max_size=400), min_size=1, max_size=6))
def test_remembered_prompt_counts_equal_fresh_counts(texts: list[str]) -> None:
    """Repeated prompts are counted from the memo; the counts must not change by it."""
    body = chat_body(messages=[{"role": "user", "content": text} for text in texts])
    first = facts(body).prompt_tokens
    assert facts(body).prompt_tokens == first
    capacity = _native.set_prompt_memo_capacity(0)
    try:
        assert facts(body).prompt_tokens == first
        assert _native.prompt_memo_len() == 0
    finally:
        _native.set_prompt_memo_capacity(capacity)
    assert first == Tokenizer("o200k_base").count_chat(body["messages"])


def test_the_prompt_memo_is_bounded() -> None:
    capacity = _native.set_prompt_memo_capacity(64)
    try:
        for index in range(1000):
            facts(chat_body(messages=[{"role": "user", "content": f"message {index}"}]))
            assert _native.prompt_memo_len() <= 64
    finally:
        _native.set_prompt_memo_capacity(capacity)


async def test_a_large_body_is_inspected_while_the_loop_goes_on_serving() -> None:
    # One word of a million letters: the slowest text there is to count.
    word = chat_body(messages=[{"role": "user", "content": "a" * 1_000_000}])
    raw = orjson.dumps(word)
    assert len(raw) > INLINE_MAX_BYTES
    async with counting_turns() as turns:
        got = await inspect_request_off_loop(raw, "chat", hash_body=False)
    assert turns.count > 1  # other tasks ran while the body was counted
    assert got.prompt_tokens == inspect_request(raw, "chat", hash_body=False).prompt_tokens
    with pytest.raises(InvalidRequestError):
        await inspect_request_off_loop(b"[" + b" " * INLINE_MAX_BYTES + b"]", "chat")
