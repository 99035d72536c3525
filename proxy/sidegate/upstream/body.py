"""The request body an upstream gets: its own model name, and usage asked for when the
gateway needs it."""

from __future__ import annotations

from typing import Final

import orjson

from sidegate.inspection import RequestFacts
from sidegate.routing import Candidate

_STREAM_OPTIONS: Final = b'"stream_options"'
_WANT_USAGE: Final = b'"stream_options":{"include_usage":true},'


def rewrite_body(
    body: bytes, facts: RequestFacts, candidate: Candidate, *, add_usage: bool
) -> bytes:
    """The body the upstream gets: its own model name, and usage asked for when we need it.

    Both edits are spliced into the client's bytes when that is safe (the model named once,
    without escapes; when usage is added, no `stream_options` and no `\\u` escape, which could
    spell it, anywhere in the text); otherwise the body is parsed and written again."""
    renamed = candidate.upstream_model != facts.model
    if not add_usage and not renamed:
        return body
    span = facts.model_span
    if span is not None and not (add_usage and (_STREAM_OPTIONS in body or b"\\u" in body)):
        start, end = span
        name = orjson.dumps(candidate.upstream_model)[1:-1] if renamed else body[start:end]
        if not add_usage:
            return b"".join((body[:start], name, body[end:]))
        brace = body.index(b"{") + 1  # the body is a JSON object: its first bracket opens it
        return b"".join((body[:brace], _WANT_USAGE, body[brace:start], name, body[end:]))
    payload = orjson.loads(body)
    payload["model"] = candidate.upstream_model
    if add_usage:
        options = payload.get("stream_options")
        payload["stream_options"] = {**(options or {}), "include_usage": True}
    return orjson.dumps(payload)
