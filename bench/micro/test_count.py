"""Token counting: sidegate against tiktoken in the same process."""

from __future__ import annotations

from typing import Any

import pytest
from corpus import multilingual, text

from conftest import Measure
from sidegate.tokens import Tokenizer

SIZES = {"1KB": 1_000, "10KB": 10_000, "100KB": 100_000}


@pytest.fixture(scope="module")
def tiktoken_o200k(offline_tiktoken: None) -> Any:
    import tiktoken

    return tiktoken.get_encoding("o200k_base")


@pytest.mark.parametrize("size", SIZES)
def test_count_sidegate(measure: Measure, size: str) -> None:
    sample = text(SIZES[size])
    measure(f"count-{size}", "sidegate", Tokenizer("o200k_base").count, sample)


@pytest.mark.parametrize("size", SIZES)
def test_count_tiktoken(measure: Measure, tiktoken_o200k: Any, size: str) -> None:
    sample = text(SIZES[size])
    measure(f"count-{size}", "tiktoken", lambda s: len(tiktoken_o200k.encode_ordinary(s)), sample)


def test_count_one_char_sidegate(measure: Measure) -> None:
    measure("count-100KB-one-char", "sidegate", Tokenizer("o200k_base").count, "a" * 100_000)


def test_count_one_char_tiktoken(measure: Measure, tiktoken_o200k: Any) -> None:
    count = lambda s: len(tiktoken_o200k.encode_ordinary(s))  # noqa: E731
    measure("count-100KB-one-char", "tiktoken", count, "a" * 100_000)


def test_count_multilingual_sidegate(measure: Measure) -> None:
    count = Tokenizer("o200k_base").count
    measure("count-10KB-multilingual", "sidegate", count, multilingual(10_000))


def test_count_multilingual_tiktoken(measure: Measure, tiktoken_o200k: Any) -> None:
    count = lambda s: len(tiktoken_o200k.encode_ordinary(s))  # noqa: E731
    measure("count-10KB-multilingual", "tiktoken", count, multilingual(10_000))
