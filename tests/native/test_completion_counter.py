"""A streamed completion counted chunk by chunk equals counting the joined text."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidegate.tokens import ENCODINGS, CompletionCounter, Tokenizer

PROSE = (
    "The quick brown fox's den — it's 42 km away!\r\n  Indented:\tcode(x) // done.  "
    "東京は日本の首都です。 مرحبا 👩🏽‍💻   \n\n"
)


def chunked(text: str, rng: random.Random, max_chunk: int) -> list[str]:
    chunks, start = [], 0
    while start < len(text):
        end = min(len(text), start + rng.randint(1, max_chunk))
        chunks.append(text[start:end])
        start = end
    return chunks


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(
    "text",
    [
        PROSE * 2_000,
        "a" * 200_000,
        " " * 100_000 + "x",
        ("word " * 9_000 + "\n" * 3_000) * 3,
    ],
    ids=["prose", "one-char", "spaces", "words-and-newlines"],
)
def test_long_streams_with_carry_over_are_exact(encoding: str, text: str) -> None:
    tokenizer = Tokenizer(encoding)
    rng = random.Random(len(text))
    counter = CompletionCounter(tokenizer)
    for chunk in chunked(text, rng, 4_000):
        counter.add(chunk)
    assert counter.count() == tokenizer.count(text)
    assert counter.count() == tokenizer.count(text)


@settings(max_examples=200, deadline=None)
@given(
    parts=st.lists(
        st.sampled_from([" ", "\n", "  ", "'ll", "word", "Ab", "12345", "中文", "!?", "\r\n"])
        | st.text(max_size=5),
        max_size=60,
    ),
)
def test_arbitrary_splits_are_exact(parts: list[str]) -> None:
    for encoding in ENCODINGS:
        tokenizer = Tokenizer(encoding)
        counter = CompletionCounter(tokenizer)
        for part in parts:
            counter.add(part)
            # Force a settle after every part, the hardest case for the carry-over.
            counter._flush()
        assert counter.count() == tokenizer.count("".join(parts))


def test_count_chat_matches_the_formula() -> None:
    tokenizer = Tokenizer("cl100k_base")
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "name": "ann", "content": [{"type": "text", "text": "Hi"}]},
    ]
    expected = 3 + 2 * 3 + 1
    for value in ("system", "Be brief.", "user", "ann", "Hi"):
        expected += tokenizer.count(value)
    assert tokenizer.count_chat(messages) == expected
    assert tokenizer.count_chat(iter(messages)) == expected


class _CountingPool(ThreadPoolExecutor):
    """A thread pool that remembers how many jobs it was given."""

    submitted = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


async def test_count_async_counts_small_inline_and_large_off_the_loop() -> None:
    tokenizer = Tokenizer("o200k_base")
    small, large = PROSE, PROSE * 2_000
    with _CountingPool(1) as pool:
        assert await tokenizer.count_async(small, pool) == tokenizer.count(small)
        assert pool.submitted == 0
        assert await tokenizer.count_async(large, pool) == tokenizer.count(large)
        assert pool.submitted == 1
