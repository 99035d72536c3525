"""The request body an upstream gets: its own model name, and usage asked for when the
gateway needs it."""

from __future__ import annotations

import orjson

from sidegate._native import splice_body
from sidegate.inspection import RequestFacts
from sidegate.routing import Candidate


def rewrite_body(
    body: bytes, facts: RequestFacts, candidate: Candidate, *, add_usage: bool
) -> bytes:
    """The body the upstream gets: its own model name, and usage asked for when we need it.

    Both edits are spliced into the client's bytes when that is safe (the model named once,
    without escapes; when usage is added, no `stream_options` and no `\\u` escape, which could
    spell it, anywhere in the text: `splice_body`); otherwise the body is parsed and written
    again."""
    renamed = candidate.upstream_model != facts.model
    if not add_usage and not renamed:
        return body
    model = candidate.upstream_model_json if renamed else None
    spliced = splice_body(body, facts.model_span, model, add_usage)
    if spliced is not None:
        return spliced
    payload = orjson.loads(body)
    payload["model"] = candidate.upstream_model
    if add_usage:
        options = payload.get("stream_options")
        payload["stream_options"] = {**(options or {}), "include_usage": True}
    return orjson.dumps(payload)
