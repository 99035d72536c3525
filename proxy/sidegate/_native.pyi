"""Stubs for the Rust extension built from `native/` (checked with mypy.stubtest)."""

from typing import final

__all__ = [
    "InvalidBodyError",
    "NativeError",
    "Tokenizer",
    "encoding_for_model",
    "inspect",
]

class NativeError(ValueError):
    """Base of every error raised by sidegate._native."""

class InvalidBodyError(NativeError):
    """A request body the proxy cannot serve; ``args`` is ``(message, param)``."""

@final
class Tokenizer:
    """An exact tiktoken-compatible BPE tokenizer for one encoding."""

    def __new__(cls, encoding: str) -> Tokenizer: ...
    @property
    def name(self) -> str:
        """The encoding's name, e.g. ``o200k_base``."""
    def count(self, text: str) -> int:
        """Number of tokens in ``text`` (equal to ``len(tiktoken.encode_ordinary(text))``)."""
    def count_chat_json(self, messages: bytes, tools: bytes | None = None) -> int:
        """Prompt tokens of JSON-encoded ``messages`` (and ``tools``) by OpenAI's chat formula.

        Raises ``InvalidBodyError`` when either is not valid JSON or ``messages`` is not an array.
        """
    def count_prefix(self, text: str) -> tuple[int, int]:
        """``(tokens, chars)``: tokens of the first ``chars`` characters of ``text``, a prefix
        that no continuation can re-tokenize, so
        ``count(text + more) == tokens + count(text[chars:] + more)``."""
    def decode_bytes(self, tokens: list[int]) -> bytes:
        """The bytes ``tokens`` stand for; a token may end inside a multi-byte character."""
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, identical to ``tiktoken.encode_ordinary(text)``."""

def encoding_for_model(model: str) -> str:
    """The encoding OpenAI uses for ``model``; unknown models get ``o200k_base``."""

def inspect(
    body: bytes,
    endpoint: str,
    encoding: str | None = None,
    count_tokens: bool = True,
) -> tuple[str, bool, bool, int | None, int, float | None, int, str]:
    """Parse, validate, count and hash a request body in one call.

    Returns ``(model, stream, include_usage, max_tokens, n, temperature, prompt_tokens,
    body_hash)``. ``endpoint`` is ``chat``, ``completions`` or ``embeddings``; ``encoding``
    defaults to the model's. Raises ``InvalidBodyError`` for a body the proxy cannot serve and
    ``NativeError`` for an unknown endpoint or encoding.
    """
