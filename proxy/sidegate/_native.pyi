"""Stubs for the Rust extension built from `native/` (checked with mypy.stubtest)."""

from typing import final

__all__ = ["NativeError", "Tokenizer"]

class NativeError(ValueError):
    """Base of every error raised by sidegate._native."""

@final
class Tokenizer:
    """An exact tiktoken-compatible BPE tokenizer for one encoding."""

    def __new__(cls, encoding: str) -> Tokenizer: ...
    @property
    def name(self) -> str:
        """The encoding's name, e.g. ``o200k_base``."""
    def count(self, text: str) -> int:
        """Number of tokens in ``text`` (equal to ``len(tiktoken.encode_ordinary(text))``)."""
    def decode_bytes(self, tokens: list[int]) -> bytes:
        """The bytes ``tokens`` stand for; a token may end inside a multi-byte character."""
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, identical to ``tiktoken.encode_ordinary(text)``."""
