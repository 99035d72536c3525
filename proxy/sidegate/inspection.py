"""What the request path needs from a raw body, read once: model, stream flag, limits, prompt
tokens and the cache-key hash.

`inspect_request` is the single entry point. The body is parsed, validated, counted and hashed
in one native call that builds no Python dicts; a body that is not a JSON object of the
endpoint's shape raises `InvalidRequestError` (400) naming the offending `param`.

Prompt tokens follow OpenAI's chat formula (see `sidegate.tokens`), tool and function
definitions included. `body_hash` is the hex xxh3-128 of the body's canonical form: member
order, whitespace and number spelling do not change it, top-level `null` members count as
absent, and `model`, `user`, `metadata`, `stream`, `stream_options` and `store` are left out
(the caller prefixes the resolved model and the tenant). Every other member, e.g. `messages`,
`tools`, `temperature`, `seed` or `max_tokens`, changes it.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Final, Literal

from sidegate import _native
from sidegate.errors import InvalidRequestError

Endpoint = Literal["chat", "completions", "embeddings"]

# Fields that never change the answer, so they stay out of the cache key (enforced natively).
NOT_IN_KEY: Final = frozenset({"model", "user", "metadata", "stream", "stream_options", "store"})


# Above this many bytes a body is inspected off the event loop (the native call releases the
# GIL). Counting takes 10 to 50 ns a byte, some 200 where a long word without spaces merges
# byte by byte (a megabyte of one letter: over 0.1 s): a large body must not stall the rest.
INLINE_MAX_BYTES: Final = 64 * 1024

# A native frozen class, built in Rust: a frozen dataclass's __init__ cost more than the whole
# parse. Fields: model, stream, include_usage, max_tokens (`max_completion_tokens` when set,
# else `max_tokens`), n, temperature, prompt_tokens, body_hash.
RequestFacts = _native.RequestFacts


def inspect_request(
    body: bytes,
    endpoint: Endpoint,
    encoding: str | None = None,
    *,
    count_tokens: bool = True,
    hash_body: bool = True,
) -> RequestFacts:
    """Parse and validate `body`; count prompt tokens in `encoding` (by model when None).

    With `count_tokens=False` the (costlier) prompt count is skipped and `prompt_tokens` is 0,
    for callers that learn the encoding only from the model and count afterwards. With
    `hash_body=False` `body_hash` is None: the hash walks the whole body, and only a response
    cache reads it.
    """
    try:
        return _native.inspect(body, endpoint, encoding, count_tokens, hash_body)
    except _native.InvalidBodyError as exc:
        message, param = exc.args
        raise InvalidRequestError(message, param=param) from None
    except _native.NativeError as exc:
        # An unknown endpoint or encoding is the caller's bug, not the client's.
        raise ValueError(str(exc)) from None


async def inspect_request_off_loop(
    body: bytes, endpoint: Endpoint, encoding: str | None = None, *, hash_body: bool = True
) -> RequestFacts:
    """`inspect_request` in the loop's default executor, for a body over `INLINE_MAX_BYTES`
    (below it a hop to a thread costs more than the inspection)."""
    call = functools.partial(inspect_request, body, endpoint, encoding, hash_body=hash_body)
    return await asyncio.get_running_loop().run_in_executor(None, call)


def body_hash(body: bytes, endpoint: Endpoint) -> str:
    """The `body_hash` `inspect_request` would return, without validating or counting."""
    try:
        return _native.cache_key(body, endpoint)
    except _native.InvalidBodyError as exc:
        message, param = exc.args
        raise InvalidRequestError(message, param=param) from None
