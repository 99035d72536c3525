"""The token counts read from an answer without parsing it equal those of the parsed answer."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from sidegate._native import usage_counts


def parsed_counts(body: bytes) -> tuple[int | None, int | None]:
    """What reading the whole answer gives: integer counts of a top-level `usage` object."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None
    usage = payload.get("usage") if isinstance(payload, dict) else None
    if not isinstance(usage, dict):
        return None, None
    counts = (usage.get("prompt_tokens"), usage.get("completion_tokens"))
    return tuple(c if type(c) is int else None for c in counts)  # type: ignore[return-value]


JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
COUNT = st.one_of(JSON_LEAF, st.lists(st.integers(0, 9), max_size=2))
KEYS = st.sampled_from(["prompt_tokens", "completion_tokens", "total_tokens", "usage", "x"])


@settings(max_examples=400, deadline=None)
@given(
    usage=st.one_of(
        JSON_LEAF,
        st.dictionaries(KEYS, COUNT, max_size=4),
        st.dictionaries(KEYS, st.dictionaries(KEYS, COUNT, max_size=2), max_size=2),
    ),
    content=st.text(max_size=40),
    usage_first=st.booleans(),
)
def test_counts_match_the_parsed_answer(usage: Any, content: str, usage_first: bool) -> None:
    choices = [{"index": 0, "message": {"role": "assistant", "content": content}}]
    members: list[tuple[str, Any]] = [("id", "chatcmpl-1"), ("choices", choices)]
    members.insert(0 if usage_first else 2, ("usage", usage))
    body = orjson.dumps(dict(members))
    assert usage_counts(body) == parsed_counts(body)


def test_text_that_spells_usage_is_not_read_as_it() -> None:
    content = 'say "usage": {"prompt_tokens": 1, "completion_tokens": 2}'
    body = orjson.dumps({"choices": [{"message": {"content": content}}]})
    assert usage_counts(body) == (None, None)
    body = orjson.dumps(
        {"choices": [{"text": content}], "usage": {"prompt_tokens": 7, "completion_tokens": 3}}
    )
    assert usage_counts(body) == (7, 3)


def test_answers_that_are_not_json_objects_have_no_counts() -> None:
    for body in (b"", b"null", b"[1]", b"<html>502 Bad Gateway</html>", b'"usage"'):
        assert usage_counts(body) == (None, None)
