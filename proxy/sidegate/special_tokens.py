"""Special tokens (`<|endoftext|>` and kin) as tiktoken's `encode` treats them.

Text that spells a special token is refused unless the caller says what it is: encoded as the
special token (`allowed_special`) or as plain text (left out of `disallowed_special`). A prompt
that smuggles `<|endoftext|>` in then cannot end a document early by accident.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Final, Literal

# tiktoken's own tables for the two encodings (its `_special_tokens`).
SPECIAL_TOKENS: Final[dict[str, dict[str, int]]] = {
    "cl100k_base": {
        "<|endoftext|>": 100257,
        "<|fim_prefix|>": 100258,
        "<|fim_middle|>": 100259,
        "<|fim_suffix|>": 100260,
        "<|endofprompt|>": 100276,
    },
    "o200k_base": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
}
# Every special token starts so: text without it needs no search.
_OPENING: Final = "<|"

Allowed = Collection[str] | Literal["all"]


@dataclass(frozen=True)
class SpecialTokens:
    ids: dict[str, int]
    texts: dict[int, bytes] = field(init=False)

    def __post_init__(self) -> None:
        texts = {token_id: text.encode() for text, token_id in self.ids.items()}
        object.__setattr__(self, "texts", texts)

    def allowed_and_disallowed(
        self, allowed_special: Allowed, disallowed_special: Allowed
    ) -> tuple[frozenset[str], frozenset[str]]:
        everything = frozenset(self.ids)
        allowed = everything if allowed_special == "all" else frozenset(allowed_special)
        if disallowed_special == "all":
            return allowed, everything - allowed
        return allowed, frozenset(disallowed_special)

    def refuse_disallowed(self, text: str, disallowed: frozenset[str]) -> None:
        if not disallowed or _OPENING not in text:
            return
        found = _pattern(disallowed).search(text)
        if found is not None:
            token = found.group()
            raise ValueError(
                f"Encountered text corresponding to disallowed special token {token!r}.\n"
                "If you want this text to be encoded as a special token, pass it to "
                f"`allowed_special`, e.g. `allowed_special={{{token!r}, ...}}`.\n"
                "If you want this text to be encoded as normal text, disable the check for "
                f"this token by passing `disallowed_special=(enc.special_tokens_set - "
                f"{{{token!r}}})`.\nTo disable this check for all special tokens, pass "
                "`disallowed_special=()`.\n"
            )

    def split(self, text: str, allowed: frozenset[str]) -> Iterator[str | int]:
        """`text` as plain runs (str) and the allowed special tokens in it (their ids)."""
        start = 0
        for found in _pattern(allowed).finditer(text):
            if found.start() > start:
                yield text[start : found.start()]
            yield self.ids[found.group()]
            start = found.end()
        if start < len(text):
            yield text[start:]


@cache
def _pattern(tokens: frozenset[str]) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(token) for token in sorted(tokens)))


@cache
def special_tokens(encoding: str) -> SpecialTokens:
    return SpecialTokens(SPECIAL_TOKENS.get(encoding, {}))
