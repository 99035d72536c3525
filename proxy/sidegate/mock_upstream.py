"""The deterministic OpenAI-compatible mock model server (`sidegate mock-upstream`).

Demos, tests, benchmarks and load rehearsals run against it instead of a real model.

Routes: `POST /v1/chat/completions`, `POST /v1/completions`, `POST /v1/embeddings`,
`GET /v1/models` (and `/v1/models/{id}`), `GET /health`. Any model name is accepted and echoed.

Replies
    A chat reply is the text of the last user message (string content, or its text parts
    joined); a legacy completion echoes each prompt (token-id prompts are decoded). `n` gives n
    identical choices; `max_completion_tokens` / `max_tokens` truncate the reply to that many
    tokens with finish_reason "length" (no limit unless asked: the legacy default of 16 is not
    applied). Usage is counted in the encoding of the requested model
    (`Tokenizer.for_model`): chat prompts by OpenAI's chat formula, legacy prompts as text,
    completion tokens as the reply's tokens (summed over choices).

Streaming (`stream: true`)
    OpenAI's event order: a role chunk per choice (chat only), then one chunk per token of the
    reply, then a chunk with finish_reason per choice, then a usage chunk with `choices: []`
    only when `stream_options.include_usage` is true, then `data: [DONE]`. A token that ends
    inside a multi-byte character carries "" and the next one carries the character, so the
    number of content chunks always equals completion_tokens and the chunks join to the text.

Pacing
    `latency_ms` delays the start of every answer (streamed or not, embeddings too).
    `tokens_per_second` makes each token take 1/N s: token i of a stream is sent (i+1)/N s after
    the start, and a non-streamed answer waits as long as its longest choice would take to
    stream. 0 means as fast as possible; the unpaced stream is then written in one piece.

Timing stamps (`stamp_events`, `--stamp-events`)
    Each write of a stream leads with an SSE comment, `: mock-timing arrived_ns=A sent_ns=S`,
    on the machine's monotonic clock (`time.monotonic_ns`): when the request reached the mock
    and when this write left. Clients ignore comments; a benchmark client on the same machine
    subtracts the mock's own time from what it measures.

Steering (see `sidegate.mock.steering`)
    The last user message (legacy: the last prompt) may start with commands, which are removed
    from the reply and can be combined: `!sleep 200 !drop 2 hello` waits 200 ms, streams the
    chunks of "hello" up to 2 tokens, then resets the connection.
    `!status 503` answers that status (400-599) with an OpenAI-shaped error body;
    `!sleep 1500` waits that many milliseconds first (on top of `latency_ms`);
    `!drop 3` streams 3 token chunks (after the role chunk; fewer if the reply is shorter) and
    then resets the TCP connection, with no finish chunk and no `[DONE]`; on a non-streaming
    request the connection is reset before any byte of the response. Before the reset the
    mock lets the written chunks leave and waits 0.1 s, so clients can read them first.

Embeddings
    Deterministic unit vectors (float32) seeded by each input's bytes; `dimensions` (default
    1536), `encoding_format` "float" or "base64" (little-endian float32), and `input` as a
    string, strings, token ids or lists of token ids; usage has the prompt tokens.

Bad input (invalid JSON, missing fields, wrong types) gets an OpenAI-shaped 400; unknown routes
get a 404 of the same shape.
"""

from sidegate.mock import MOCK_MODELS, build_mock_app, run_mock_upstream

__all__ = ["MOCK_MODELS", "build_mock_app", "run_mock_upstream"]
