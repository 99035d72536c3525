from __future__ import annotations

import subprocess
import sys

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


_RELEASE_SCRIPT = """
from sidegate.tokens import Tokenizer, release_vocabulary_pages

def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 1e6

text = "Hello, world! Grüße aus der Küche, 你好世界 " * 50
before = Tokenizer("o200k_base").encode(text)
loaded = rss_mb()
released = release_vocabulary_pages()
print(released, loaded - rss_mb(), Tokenizer("o200k_base").encode(text) == before,
      Tokenizer("cl100k_base").count(text))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc, uses madvise")
def test_released_vocabulary_pages_shrink_memory_and_change_no_count() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _RELEASE_SCRIPT], capture_output=True, text=True, check=True
    )
    released, shrunk_mb, same_ids, cl100k = result.stdout.split()
    assert int(released) > 10_000_000
    assert float(shrunk_mb) > 10  # the embedded o200k_base table's resident pages
    assert same_ids == "True"
    assert int(cl100k) == Tokenizer("cl100k_base").count(
        "Hello, world! Grüße aus der Küche, 你好世界 " * 50
    )
