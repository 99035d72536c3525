from __future__ import annotations

import pytest

from sidegate.tokens import Tokenizer, encoding_for_model


def test_hello_world_ids() -> None:
    assert Tokenizer("cl100k_base").encode("hello world") == [15339, 1917]
    assert Tokenizer("o200k_base").encode("hello world") == [24912, 2375]


def test_unknown_encoding_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="p50k_base"):
        Tokenizer("p50k_base")


def test_for_model_picks_encoding() -> None:
    assert encoding_for_model("gpt-4o-mini") == "o200k_base"
    assert encoding_for_model("gpt-3.5-turbo") == "cl100k_base"
    assert Tokenizer.for_model("gpt-4").name == "cl100k_base"
