"""`POST /v1/embeddings`: deterministic unit vectors, one per input.

A vector is seeded by the input's UTF-8 bytes (token-id inputs are decoded first, so `"hello"`
and its token ids embed alike) and by nothing else: the same text always gets the same vector,
whatever the model. Components are rounded to float32, so the `float` and `base64` encodings
carry the very same numbers.

Serialized vectors are kept per app, within a byte budget: benchmarks repeat their inputs, and
drawing and serializing 1536 floats in Python costs more than the rest of the request.
"""

from __future__ import annotations

import base64
import hashlib
import math
import sys
from array import array
from typing import Any, Final

import orjson
from aiohttp import web

from sidegate.errors import InvalidRequestError
from sidegate.mock.wire import (
    MOCK_CONFIG_KEY,
    is_token_ids,
    json_response,
    optional_int,
    read_object,
    require_model,
    wait_before_answer,
)
from sidegate.tokens import Tokenizer

DEFAULT_DIMENSIONS: Final = 1536
_MAX_DIMENSIONS: Final = 8192
_SEED_PREFIX: Final = b"sidegate-mock-embedding\x00"
_CACHE_BUDGET_BYTES: Final = 16 * 1024 * 1024


class EncodedVectors:
    """JSON of vectors by (input digest, dimensions, encoding), oldest dropped first."""

    __slots__ = ("_entries", "_size")

    def __init__(self) -> None:
        self._entries: dict[tuple[bytes, int, str], bytes] = {}
        self._size = 0

    def get(self, seed: bytes, dimensions: int, encoding: str) -> bytes:
        key = (hashlib.blake2b(seed, digest_size=16).digest(), dimensions, encoding)
        found = self._entries.get(key)
        if found is None:
            vector = unit_vector(seed, dimensions)
            value = vector.tolist() if encoding == "float" else _little_endian_base64(vector)
            found = orjson.dumps(value)
            while self._entries and self._size + len(found) > _CACHE_BUDGET_BYTES:
                self._size -= len(self._entries.pop(next(iter(self._entries))))
            self._entries[key] = found
            self._size += len(found)
        return found


ENCODED_VECTORS_KEY: Final = web.AppKey("ENCODED_VECTORS_KEY", EncodedVectors)


async def embeddings(request: web.Request) -> web.Response:
    payload = await read_object(request)
    model = require_model(payload)
    dimensions = optional_int(payload, "dimensions", 1, _MAX_DIMENSIONS) or DEFAULT_DIMENSIONS
    encoding = payload.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise InvalidRequestError(
            "'encoding_format' must be 'float' or 'base64'.", param="encoding_format"
        )
    tokenizer = Tokenizer.for_model(model)
    inputs, prompt_tokens = _inputs(payload.get("input"), tokenizer)
    await wait_before_answer(request.app[MOCK_CONFIG_KEY], 0)
    vectors = request.app[ENCODED_VECTORS_KEY]
    data = [
        {
            "object": "embedding",
            "index": index,
            "embedding": orjson.Fragment(vectors.get(seed, dimensions, encoding)),
        }
        for index, seed in enumerate(inputs)
    ]
    return json_response(
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        }
    )


def unit_vector(seed: bytes, dimensions: int) -> array[float]:
    """A float32 vector of length 1 drawn deterministically from `seed`."""
    raw = array("h", hashlib.shake_256(_SEED_PREFIX + seed).digest(2 * dimensions))
    if sys.byteorder != "little":
        raw.byteswap()
    norm = math.hypot(*raw) or 1.0
    return array("f", [value / norm for value in raw])


def _little_endian_base64(vector: array[float]) -> str:
    if sys.byteorder != "little":
        vector = array("f", vector)
        vector.byteswap()
    return base64.b64encode(vector.tobytes()).decode("ascii")


def _inputs(value: Any, tokenizer: Tokenizer) -> tuple[list[bytes], int]:
    """The bytes each input stands for, and the inputs' token count."""
    if isinstance(value, str):
        return [value.encode()], tokenizer.count(value)
    if isinstance(value, list) and value:
        if all(isinstance(item, str) for item in value):
            return [item.encode() for item in value], sum(tokenizer.count(i) for i in value)
        if is_token_ids(value):
            return [_token_bytes(tokenizer, value)], len(value)
        if all(isinstance(item, list) and item and is_token_ids(item) for item in value):
            return [_token_bytes(tokenizer, ids) for ids in value], sum(len(i) for i in value)
    raise InvalidRequestError(
        "'input' must be a string, or a non-empty array of strings or of token ids.",
        param="input",
    )


def _token_bytes(tokenizer: Tokenizer, ids: list[int]) -> bytes:
    try:
        return tokenizer.decode_bytes(ids)
    except ValueError:
        raise InvalidRequestError(
            f"'input' holds a token id unknown to {tokenizer.name}.", param="input"
        ) from None
