"""Token counting: the public `Tokenizer` facade over the native BPE core.

This module and its siblings `inspection.py` and `ratelimit.py` are the only ones that import
`sidegate._native`; the rest of the package sees plain Python types.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from concurrent.futures import Executor
from functools import cache
from typing import Any, Final

import orjson

from sidegate import _native
from sidegate.special_tokens import Allowed, special_tokens

ENCODINGS: Final = ("cl100k_base", "o200k_base")
DEFAULT_ENCODING: Final = "o200k_base"

# OpenAI's published chat formula (the cookbook's `num_tokens_from_messages`).
TOKENS_PER_MESSAGE: Final = 3
TOKENS_PER_NAME: Final = 1
REPLY_PRIMING_TOKENS: Final = 3


# Above this many characters (about 0.3 ms of counting), `count_async` leaves the event loop.
INLINE_MAX_CHARS: Final = 64 * 1024


def encoding_for_model(model: str) -> str:
    """The encoding OpenAI uses for `model` (a `provider/` prefix is ignored); unknown models get
    o200k_base. The rule lives in the native core so request inspection applies the same one."""
    return _native.encoding_for_model(model)


class Tokenizer:
    """Counts and encodes text exactly as tiktoken does, for cl100k_base and o200k_base."""

    __slots__ = ("_native", "_special", "name")

    def __init__(self, encoding: str = DEFAULT_ENCODING) -> None:
        try:
            self._native = _native.Tokenizer(encoding)
        except _native.NativeError as exc:
            raise ValueError(str(exc)) from None
        self.name = encoding
        self._special = special_tokens(encoding)

    @staticmethod
    def for_model(model: str) -> Tokenizer:
        """The shared tokenizer for the encoding `model` uses."""
        return _shared(encoding_for_model(model))

    @property
    def special_tokens_set(self) -> frozenset[str]:
        return frozenset(self._special.ids)

    def count(self, text: str) -> int:
        """Tokens of `text` read as plain text (`encode_ordinary`), special-token spellings
        included: what a prompt costs."""
        try:
            return self._native.count(text)
        except UnicodeEncodeError:
            return self._native.count(well_formed(text))

    async def count_async(self, text: str, executor: Executor | None = None) -> int:
        """`count` that keeps the event loop serving while a large text is counted.

        Texts up to `INLINE_MAX_CHARS` are counted inline (a hop to a thread costs more);
        larger ones run in `executor` (the loop's default when None). That only helps because
        the native count releases the GIL. This is the one place the rule lives.
        """
        if len(text) <= INLINE_MAX_CHARS:
            return self.count(text)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, self.count, text)

    def encode(
        self,
        text: str,
        *,
        allowed_special: Allowed = frozenset(),
        disallowed_special: Allowed = "all",
    ) -> list[int]:
        """As tiktoken's `encode`: text that spells a special token raises ValueError unless
        `allowed_special` names it (it becomes the special token's id) or `disallowed_special`
        leaves it out (it is encoded as plain text)."""
        if "<|" not in text:  # how every special token starts
            return self.encode_ordinary(text)
        special = self._special
        allowed, disallowed = special.allowed_and_disallowed(allowed_special, disallowed_special)
        special.refuse_disallowed(text, disallowed)
        if not allowed:
            return self.encode_ordinary(text)
        ids: list[int] = []
        for part in special.split(text, allowed):
            if isinstance(part, int):
                ids.append(part)
            else:
                ids.extend(self.encode_ordinary(part))
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """`text` as plain text, special-token spellings included (tiktoken's name)."""
        try:
            return self._native.encode(text)
        except UnicodeEncodeError:
            return self._native.encode(well_formed(text))

    def decode_bytes(self, tokens: list[int]) -> bytes:
        try:
            return self._native.decode_bytes(tokens)
        except _native.NativeError:
            texts = self._special.texts
            if not any(token in texts for token in tokens):
                raise
        out = bytearray()
        run: list[int] = []
        for token in tokens:
            text = texts.get(token)
            if text is None:
                run.append(token)
                continue
            out += self._native.decode_bytes(run) if run else b""
            out += text
            run = []
        out += self._native.decode_bytes(run) if run else b""
        return bytes(out)

    def count_chat(
        self,
        messages: Iterable[Mapping[str, Any]],
        tools: Iterable[Mapping[str, Any]] | None = None,
    ) -> int:
        """Prompt tokens of a chat request by OpenAI's formula.

        3 per message, plus every field value's tokens, plus 1 per `name`, plus 3 that prime
        the reply. Structured values (content parts, tool calls) count the text they carry;
        image, audio and file parts count a fixed 85. `tools` (the request's `tools` array)
        adds the published per-function cost. This is the same code `inspect_request` runs.
        """
        messages = list(messages)
        tools = None if tools is None else list(tools)
        try:
            encoded = orjson.dumps(messages, default=_plain)
            encoded_tools = None if tools is None else orjson.dumps(tools, default=_plain)
        except orjson.JSONEncodeError:
            # Lone surrogates, which UTF-8 cannot carry: counted as U+FFFD, as `count` does.
            encoded = orjson.dumps(_well_formed_values(messages), default=_plain)
            encoded_tools = None if tools is None else orjson.dumps(_well_formed_values(tools))
        return self._native.count_chat_json(encoded, encoded_tools)

    def __repr__(self) -> str:
        return f"Tokenizer({self.name!r})"


class CompletionCounter:
    """Counts a streamed completion exactly, at the cost of about one native call per 32 KiB.

    Summing per-chunk counts would be wrong (BPE merges across chunk boundaries), so text is
    accumulated in Python. Once `FLUSH_CHARS` have piled up, the settled prefix (the part no
    later text can re-tokenize) is counted natively and only the rest is carried over; `count`
    adds the carry's tokens, so the result equals counting the joined text.
    """

    FLUSH_CHARS: Final = 32 * 1024

    __slots__ = ("_flush_at", "_parts", "_pending", "_settled", "_tokenizer")

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        self._parts: list[str] = []
        self._pending = 0
        self._settled = 0
        self._flush_at = self.FLUSH_CHARS

    def add(self, text: str) -> None:
        self._parts.append(text)
        self._pending += len(text)
        if self._pending >= self._flush_at:
            self._flush()

    def count(self) -> int:
        """Tokens of everything added so far (may be called more than once)."""
        return self._settled + self._tokenizer.count("".join(self._parts))

    def _flush(self) -> None:
        text = "".join(self._parts)
        try:
            tokens, consumed = self._tokenizer._native.count_prefix(text)
        except UnicodeEncodeError:
            text = well_formed(text)
            tokens, consumed = self._tokenizer._native.count_prefix(text)
        rest = text[consumed:]
        self._settled += tokens
        self._parts = [rest] if rest else []
        self._pending = len(rest)
        # A carry that will not settle (one endless word or run of spaces) must not be
        # rescanned on every chunk: wait until it has doubled.
        self._flush_at = max(self.FLUSH_CHARS, 2 * self._pending)


def well_formed(text: str) -> str:
    """`text` with each lone surrogate (which UTF-8 cannot carry) replaced by U+FFFD, and
    split surrogate pairs joined, as tiktoken does before it encodes."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _well_formed_values(value: Any) -> Any:
    if isinstance(value, str):
        return well_formed(value)
    if isinstance(value, Mapping):
        return {well_formed(str(key)): _well_formed_values(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_well_formed_values(item) for item in value]
    return value


@cache
def _shared(encoding: str) -> Tokenizer:
    return Tokenizer(encoding)


def _plain(value: Any) -> Any:
    """Mappings other than dict (and other iterables) as orjson can write them."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"cannot count a {type(value).__name__}")
