"""Replies as the mock generates them: token by token, truncated by `max_tokens`."""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Literal

from sidegate.tokens import Tokenizer

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True, slots=True)
class Reply:
    """One generated text; `pieces` holds the text each token adds when streamed.

    A token that ends inside a multi-byte character adds "" and the token that completes the
    character carries it, so there is exactly one piece per token and the pieces join to `text`.
    """

    text: str
    tokens: int
    finish_reason: FinishReason
    pieces: tuple[str, ...]


def generate(tokenizer: Tokenizer, text: str, max_tokens: int | None, *, pieces: bool) -> Reply:
    """The reply echoing `text`; per-token pieces are worked out only when `pieces` is set."""
    ids = tokenizer.encode_ordinary(text)
    finish: FinishReason = "stop"
    if max_tokens is not None and len(ids) > max_tokens:
        ids = ids[:max_tokens]
        finish = "length"
    if not pieces:
        if finish == "length":
            # A cut inside a character leaves a partial sequence, shown as U+FFFD like the
            # streamed pieces show it.
            text = tokenizer.decode_bytes(ids).decode("utf-8", "replace")
        return Reply(text=text, tokens=len(ids), finish_reason=finish, pieces=())
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    parts = [decoder.decode(tokenizer.decode_bytes([token])) for token in ids]
    tail = decoder.decode(b"", final=True)
    if tail:
        parts[-1] += tail
    return Reply(text="".join(parts), tokens=len(ids), finish_reason=finish, pieces=tuple(parts))


@dataclass(frozen=True, slots=True)
class Completion:
    """Everything an answer (streamed or not) is rendered from."""

    kind: Literal["chat", "text"]
    id: str
    created: int
    model: str
    choices: tuple[tuple[int, Reply], ...]  # (choice index, reply)
    prompt_tokens: int
    include_usage: bool = False

    @property
    def completion_tokens(self) -> int:
        return sum(reply.tokens for _, reply in self.choices)

    def usage(self) -> dict[str, object]:
        usage: dict[str, object] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }
        if self.kind == "chat":
            usage["prompt_tokens_details"] = {"cached_tokens": 0, "audio_tokens": 0}
            usage["completion_tokens_details"] = {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            }
        return usage
