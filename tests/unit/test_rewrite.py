"""The body the upstream gets: renamed and asked for usage, by splicing or by re-encoding."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from sidegate.inspection import inspect_request
from sidegate.routing import Candidate
from sidegate.settings import PriceSettings
from sidegate.upstream.body import rewrite_body

MESSAGES = [{"role": "user", "content": 'Say "model": hi'}]


def _candidate(upstream_model: str) -> Candidate:
    return Candidate("alias", "up", upstream_model, "o200k_base", PriceSettings())


def _expected(payload: dict[str, Any], model: str, add_usage: bool) -> dict[str, Any]:
    expected = {**payload, "model": model}
    if add_usage:
        expected["stream_options"] = {
            **(payload.get("stream_options") or {}),
            "include_usage": True,
        }
    return expected


BODIES = [
    b'{"model":"alias","messages":%s}' % orjson.dumps(MESSAGES),
    b' \n{ "messages" : %s , "model" : "alias" , "stream": true }' % orjson.dumps(MESSAGES),
    b'{"model":"al\\u0069as","messages":%s}' % orjson.dumps(MESSAGES),  # escaped
    b'{"model":"x","model":"alias","messages":%s}' % orjson.dumps(MESSAGES),  # repeated
    b'{"model":"alias","stream_options":{"other":1},"messages":%s}' % orjson.dumps(MESSAGES),
    b'{"model":"alias","messages":[{"role":"user","content":"stream_options"}]}',
    # The key itself escaped: a splice would leave two stream_options, the client's last.
    b'{"model":"alias","stream\\u005foptions":{"other":1},"messages":%s}' % orjson.dumps(MESSAGES),
]


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("add_usage", [False, True])
@pytest.mark.parametrize("upstream_model", ["gpt-4o-mini", 'odd "name" \u00e9', "alias"])
def test_the_upstream_body_has_its_model_and_usage(
    body: bytes, add_usage: bool, upstream_model: str
) -> None:
    facts = inspect_request(body, "chat")
    rewritten = rewrite_body(body, facts, _candidate(upstream_model), add_usage=add_usage)
    assert orjson.loads(rewritten) == _expected(orjson.loads(body), upstream_model, add_usage)
    if upstream_model != "alias" or add_usage:
        # Rewritten, the one member named model is the upstream's (never a client's duplicate).
        assert rewritten.count(b'"model"') == 1


def test_a_body_needing_no_change_is_the_same_object() -> None:
    body = BODIES[0]
    assert (
        rewrite_body(body, inspect_request(body, "chat"), _candidate("alias"), add_usage=False)
        is body
    )


def test_a_splice_keeps_the_clients_bytes_around_the_name() -> None:
    body = BODIES[1]
    rewritten = rewrite_body(
        body, inspect_request(body, "chat"), _candidate("gpt-4o"), add_usage=False
    )
    assert rewritten == body.replace(b'"alias"', b'"gpt-4o"')
