# The corpus is deliberately multilingual; look-alike characters are the point.
# ruff: noqa: RUF001
"""The native tokenizer must agree with tiktoken id for id, on every input we can think of.

tiktoken reads its rank files from the shared offline cache (the `tiktoken_cache` fixture), so
these tests never touch the network.
"""

from __future__ import annotations

import random
import threading
import unicodedata
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidegate.tokens import ENCODINGS, CompletionCounter, Tokenizer

STRINGS_PER_ENCODING = 10_000

CORPUS: tuple[str, ...] = (
    "",
    "hello world",
    "Hello, World! It's a dog's life; we'll see, they're here, I've done, I'm in, I'd go.",
    "IT'S WE'LL THEY'RE I'VE I'M I'D DON'T Ca'Nt o'Clock",
    'def f(x: int) -> int:\n    return x ** 2  # square\n\nprint(f"{f(3)=}")\n',
    'fn main() {\r\n\tlet v: Vec<u8> = vec![1, 2, 3];\r\n\tprintln!("{:?}", v);\r\n}\r\n',
    '<div class="x">&nbsp;</div>\n{"a": [1, 2.5e-10, null, true]}\n/* c */ // d\n',
    "天下大勢，分久必合，合久必分。東京は日本の首都です。서울은 한국의 수도입니다.",
    "مرحبا بالعالم! هذه جملة عربية مع أرقام ١٢٣٤٥ و 12345.",
    "नमस्ते दुनिया। यह हिन्दी का वाक्य है, जिसमें मात्राएँ हैं।",
    "👨‍👩‍👧‍👦 👩🏽‍💻 🏳️‍🌈 🇺🇳 ❤️‍🔥 😀😃😄 1️⃣ #️⃣",
    "   \n\n\n\t\t  \r\n\r\n\r\n    x  \n  ",
    "a\r\n\r\n\r\nb \r\n c\n\r d \t\r\n",
    "1234567890123456789012345678901234567890 3.14159265358979 -0.000001 1e100",
    "Ünïcödé façade naïve coöperate résumé ΑΒΓ αβγ Привет мир ДОБРЫЙ",
    "mixedΣcripts中文English123العربية😀हिन्दी\u200bzero\u00a0width\u3000ideo",
    "e\u0301 a\u0308 n\u0303 \u0915\u094d\u0937 combining\u0336strike",
    "snake_case camelCase PascalCase SCREAMING_CASE kebab-case HTTPServer iOS",
    "https://example.com/path?q=1&r=two#frag user@example.com C:\\Windows\\system32",
    "\x00\x01\x02\x7f\x1b[31mred\x1b[0m \ufeff\ufffd",
    " leading space",
    "trailing space ",
    "   ",
    "\n",
    "'s",
    "a" * 100_000,
    " " * 100_000,
    "\n" * 50_000,
    "7" * 100_000,
    "中" * 30_000,
    "😀" * 20_000,
    "ab" * 50_000,
    "!" * 100_000,
)


@cache
def _reference(encoding: str) -> Any:
    import tiktoken

    return tiktoken.get_encoding(encoding)


@pytest.fixture(scope="module")
def reference(tiktoken_cache: Path) -> Callable[[str], Any]:
    return _reference


@cache
def _category_pools() -> tuple[tuple[str, ...], ...]:
    """Every assigned BMP and SMP code point, grouped by Unicode general category."""
    pools: dict[str, list[str]] = {}
    for cp in range(0x20000):
        if 0xD800 <= cp < 0xE000:
            continue
        char = chr(cp)
        pools.setdefault(unicodedata.category(char), []).append(char)
    return tuple(tuple(chars) for chars in pools.values())


# Characters and fragments the pre-tokenizer regexes branch on.
_SPECIAL = (
    *" \t\n\r\x0b\x0c\u00a0\u1680\u2028\u3000\u200d\ufe0f",
    *"sStTmMdDlLrReEvV0123456789.,;:!?-_/\\\"'`()[]{}<>#@&*",
    *("'s", "'S", "'ll", "'LL", "'re", "'Ve", "'m", "'D", "\r\n", "  ", "\n\n", "//"),
)


def _random_text(rng: random.Random) -> str:
    pools = _category_pools()
    shape = rng.random()
    if shape < 0.1:
        # Arbitrary code points, surrogates replaced (Python str may hold them; UTF-8 may not).
        raw = "".join(chr(rng.randrange(0x110000)) for _ in range(rng.randrange(1, 80)))
        return raw.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if shape < 0.2:
        # One long run, the worst case for BPE merging.
        return rng.choice(_SPECIAL + tuple(rng.choice(pools))) * rng.randrange(50, 3000)
    parts: list[str] = []
    for _ in range(rng.randrange(1, 60)):
        roll = rng.random()
        if roll < 0.45:
            parts.append(rng.choice(_SPECIAL))
        elif roll < 0.75:
            parts.append(chr(rng.choice((rng.randrange(0x20, 0x7F), rng.randrange(0xA0, 0x250)))))
        else:
            parts.append(rng.choice(rng.choice(pools)))
    return "".join(parts)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_corpus_matches_tiktoken(encoding: str, reference: Callable[[str], Any]) -> None:
    ours, theirs = Tokenizer(encoding), reference(encoding)
    for text in CORPUS:
        expected = theirs.encode_ordinary(text)
        assert ours.encode(text) == expected, text[:80]
        assert ours.count(text) == len(expected), text[:80]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_random_text_matches_tiktoken(encoding: str, reference: Callable[[str], Any]) -> None:
    ours, theirs = Tokenizer(encoding), reference(encoding)
    rng = random.Random(f"sidegate-{encoding}")
    mismatches = []
    for _ in range(STRINGS_PER_ENCODING):
        text = _random_text(rng)
        expected = theirs.encode_ordinary(text)
        if ours.encode_ordinary(text) != expected or ours.count(text) != len(expected):
            mismatches.append(text)
    assert mismatches == []


@pytest.mark.parametrize("encoding", ENCODINGS)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=300))
def test_arbitrary_unicode_matches_tiktoken(
    encoding: str, reference: Callable[[str], Any], text: str
) -> None:
    text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    expected = reference(encoding).encode_ordinary(text)
    tokenizer = Tokenizer(encoding)
    assert tokenizer.encode_ordinary(text) == expected
    assert tokenizer.count(text) == len(expected)
    assert tokenizer.decode_bytes(expected) == text.encode()


LONE_SURROGATES: tuple[str, ...] = (
    "\ud800",
    "a\ud800b",
    "\udfff tail",
    "pair split \ud83d\ude00 and reversed \ude00\ud83d",
    "x" * 5000 + "\udc80" + " y" * 20_000,  # past the counter's flush
)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_lone_surrogates_count_as_tiktoken_counts_them(
    encoding: str, reference: Callable[[str], Any]
) -> None:
    """Python strings can hold what UTF-8 cannot; tiktoken reads each such code point as
    U+FFFD, and a library user switching from it gets the same ids, not an exception."""
    ours, theirs = Tokenizer(encoding), reference(encoding)
    for text in LONE_SURROGATES:
        expected = theirs.encode_ordinary(text)
        assert ours.encode(text) == expected, text[:40]
        assert ours.count(text) == len(expected), text[:40]
        counter = CompletionCounter(ours)
        for start in range(0, len(text), 7):
            counter.add(text[start : start + 7])
        assert counter.count() == len(expected), text[:40]
    message = [{"role": "user", "content": "a\ud800b"}]
    replaced = [{"role": "user", "content": "a\ufffdb"}]
    assert ours.count_chat(message) == ours.count_chat(replaced)


SPECIAL_TEXTS: tuple[str, ...] = (
    "<|endoftext|>",
    "doc one<|endoftext|>doc two<|endofprompt|>",
    "<|fim_prefix|>def f(<|fim_suffix|>)<|fim_middle|>",
    "<|endoftext|><|endoftext|> <| endoftext |> <|notatoken|>",
    "plain text, no specials",
)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_special_tokens_are_treated_as_tiktoken_treats_them(
    encoding: str, reference: Callable[[str], Any]
) -> None:
    ours, theirs = Tokenizer(encoding), reference(encoding)
    assert ours.special_tokens_set == theirs.special_tokens_set
    choices: list[dict[str, Any]] = [
        {},
        {"allowed_special": "all"},
        {"disallowed_special": ()},
        {"allowed_special": {"<|endoftext|>"}},
        {"allowed_special": {"<|endoftext|>"}, "disallowed_special": ()},
        {"disallowed_special": {"<|endofprompt|>"}},
    ]
    for text in SPECIAL_TEXTS:
        for options in choices:
            try:
                expected = theirs.encode(text, **options)
            except ValueError as refused:
                with pytest.raises(ValueError) as caught:
                    ours.encode(text, **options)
                assert str(caught.value) == str(refused)
                continue
            assert ours.encode(text, **options) == expected, (text, options)
            assert ours.decode_bytes(expected) == theirs.decode_bytes(expected)
        assert ours.encode_ordinary(text) == theirs.encode_ordinary(text)
        assert ours.count(text) == len(theirs.encode_ordinary(text))


def test_counting_releases_the_gil() -> None:
    """While one thread counts a large text natively, another Python thread gets to run.

    The switch interval is raised far above the count's duration, so the main thread can only
    run during the count if the native call lets go of the GIL; no timing is asserted.
    """
    import sys

    tokenizer = Tokenizer("o200k_base")
    text = "The quick brown fox jumps over the lazy dog. " * 50_000
    started, finished = threading.Event(), threading.Event()

    def count() -> None:
        started.set()
        # Several calls, so a main thread slow to wake still meets one of them.
        for _ in range(8):
            tokenizer.count(text)
        finished.set()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(30.0)
    try:
        worker = threading.Thread(target=count)
        worker.start()
        started.wait()
        ran_during_count = not finished.is_set()
        worker.join()
    finally:
        sys.setswitchinterval(interval)
    assert ran_during_count
