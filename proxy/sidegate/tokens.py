"""Token counting: the public `Tokenizer` facade over the native BPE core.

This module and its siblings `cache.py` and `ratelimit.py` are the only ones that import
`sidegate._native`; the rest of the package sees plain Python types.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any, Final

from sidegate import _native

ENCODINGS: Final = ("cl100k_base", "o200k_base")
DEFAULT_ENCODING: Final = "o200k_base"

# OpenAI's published chat formula (the cookbook's `num_tokens_from_messages`).
TOKENS_PER_MESSAGE: Final = 3
TOKENS_PER_NAME: Final = 1
REPLY_PRIMING_TOKENS: Final = 3

# Model-name prefixes of the older cl100k_base family; everything newer uses o200k_base.
_CL100K_PREFIXES: Final = (
    "gpt-4-",
    "gpt-3.5",
    "gpt-35",
    "text-embedding-ada",
    "text-embedding-3",
    "davinci-002",
    "babbage-002",
)
_CL100K_EXACT: Final = frozenset({"gpt-4", "gpt-4-32k"})
_O200K_PREFIXES: Final = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")


def encoding_for_model(model: str) -> str:
    """The encoding OpenAI uses for `model`; unknown models get o200k_base."""
    name = model.rsplit("/", 1)[-1]
    if name.startswith(_O200K_PREFIXES):
        return "o200k_base"
    if name in _CL100K_EXACT or name.startswith(_CL100K_PREFIXES):
        return "cl100k_base"
    return DEFAULT_ENCODING


class Tokenizer:
    """Counts and encodes text exactly as tiktoken does, for cl100k_base and o200k_base."""

    __slots__ = ("_native", "name")

    def __init__(self, encoding: str = DEFAULT_ENCODING) -> None:
        try:
            self._native = _native.Tokenizer(encoding)
        except _native.NativeError as exc:
            raise ValueError(str(exc)) from None
        self.name = encoding

    @staticmethod
    def for_model(model: str) -> Tokenizer:
        """The shared tokenizer for the encoding `model` uses."""
        return _shared(encoding_for_model(model))

    def count(self, text: str) -> int:
        return self._native.count(text)

    def encode(self, text: str) -> list[int]:
        return self._native.encode(text)

    def decode_bytes(self, tokens: list[int]) -> bytes:
        return self._native.decode_bytes(tokens)

    def count_chat(self, messages: Iterable[Mapping[str, Any]]) -> int:
        """Prompt tokens of a chat request by OpenAI's formula.

        3 per message, plus every field value's tokens, plus 1 per `name`, plus 3 that prime
        the reply. Structured values (content parts, tool calls) count the text they carry.
        """
        total = REPLY_PRIMING_TOKENS
        for message in messages:
            total += TOKENS_PER_MESSAGE
            for key, value in message.items():
                total += self.count(_text_of(value))
                if key == "name":
                    total += TOKENS_PER_NAME
        return total

    def __repr__(self) -> str:
        return f"Tokenizer({self.name!r})"


class CompletionCounter:
    """Counts a streamed completion exactly: text is accumulated and counted once at the end.

    Summing per-chunk counts would be wrong (BPE merges across chunk boundaries).
    """

    __slots__ = ("_parts", "_tokenizer")

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        self._parts: list[str] = []

    def add(self, text: str) -> None:
        self._parts.append(text)

    def count(self) -> int:
        return self._tokenizer.count("".join(self._parts))


@cache
def _shared(encoding: str) -> Tokenizer:
    return Tokenizer(encoding)


def _text_of(value: Any) -> str:
    """The text a message field carries: strings as-is, content parts and tool calls flattened."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, Mapping):
        if value.get("type") == "text":
            return str(value.get("text", ""))
        return "".join(_text_of(v) for k, v in value.items() if k not in ("type", "id"))
    if isinstance(value, list):
        return "".join(_text_of(item) for item in value)
    return str(value)
