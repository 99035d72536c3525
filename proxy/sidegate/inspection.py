"""What the request path needs from a raw body, read once: model, stream flag, limits, prompt
tokens and the cache-key hash.

`inspect_request` is the single entry point; it raises `InvalidRequestError` (400) for a body
that is not a JSON object of the endpoint's shape.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson

from sidegate.errors import InvalidRequestError
from sidegate.tokens import Tokenizer

Endpoint = Literal["chat", "completions", "embeddings"]

# Fields that never change the answer, so they stay out of the cache key.
_NOT_IN_KEY: Final = frozenset({"model", "user", "metadata", "stream", "stream_options", "store"})


@dataclass(frozen=True, slots=True)
class RequestFacts:
    model: str
    stream: bool
    include_usage: bool
    max_tokens: int | None
    n: int
    temperature: float | None
    prompt_tokens: int
    body_hash: str


def inspect_request(body: bytes, endpoint: Endpoint, encoding: str | None = None) -> RequestFacts:
    """Parse and validate `body`; count prompt tokens in `encoding` (by model when None)."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"Request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidRequestError("Request body must be a JSON object.")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("You must provide a model parameter.", param="model")
    tokenizer = Tokenizer(encoding) if encoding else Tokenizer.for_model(model)
    prompt_tokens = _prompt_tokens(payload, endpoint, tokenizer)
    stream = _optional(payload, "stream", bool, False)
    options = _optional(payload, "stream_options", dict, None)
    include_usage = bool(options and options.get("include_usage") is True)
    max_tokens = _optional(payload, "max_completion_tokens", int, None)
    if max_tokens is None:
        max_tokens = _optional(payload, "max_tokens", int, None)
    if max_tokens is not None and max_tokens < 1:
        raise InvalidRequestError("max_tokens must be at least 1.", param="max_tokens")
    n = _optional(payload, "n", int, 1)
    if n < 1:
        raise InvalidRequestError("n must be at least 1.", param="n")
    temperature = _optional(payload, "temperature", (int, float), None)
    return RequestFacts(
        model=model,
        stream=stream,
        include_usage=include_usage,
        max_tokens=max_tokens,
        n=n,
        temperature=None if temperature is None else float(temperature),
        prompt_tokens=prompt_tokens,
        body_hash=_hash({k: v for k, v in payload.items() if k not in _NOT_IN_KEY}),
    )


def _prompt_tokens(payload: Mapping[str, Any], endpoint: Endpoint, tokenizer: Tokenizer) -> int:
    if endpoint == "chat":
        messages = payload.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InvalidRequestError(
                "'messages' must be a non-empty array of message objects.", param="messages"
            )
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise InvalidRequestError(
                    f"messages[{index}] must be an object with a string 'role'.",
                    param=f"messages.[{index}]",
                )
        return tokenizer.count_chat(messages)
    field = "prompt" if endpoint == "completions" else "input"
    value = payload.get(field)
    if isinstance(value, str):
        return tokenizer.count(value)
    if isinstance(value, list) and value:
        if all(isinstance(item, str) for item in value):
            return sum(tokenizer.count(item) for item in value)
        if all(isinstance(item, int) for item in value):
            return len(value)
        if all(isinstance(item, list) for item in value):
            return sum(len(item) for item in value)
    raise InvalidRequestError(
        f"'{field}' must be a string or a non-empty array of strings or token ids.", param=field
    )


def _optional(payload: Mapping[str, Any], name: str, kind: Any, default: Any) -> Any:
    value = payload.get(name)
    if value is None:
        return default
    # bool is an int in Python; an integer field must not accept true/false.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidRequestError(f"Invalid type for '{name}'.", param=name)
    return value


def _hash(canonical: Mapping[str, Any]) -> str:
    data = orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(data, digest_size=16).hexdigest()
