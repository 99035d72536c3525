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


_FOOTPRINT_SCRIPT = """
import random
from sidegate.tokens import Tokenizer

def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 1e6

before = rss_mb()
rng = random.Random(7)
text = "".join(chr(rng.randint(32, 0x3000)) for _ in range(100_000))
for encoding in ("cl100k_base", "o200k_base"):
    Tokenizer(encoding).count(text + " Hello, world! " * 1000)
print(rss_mb() - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_both_vocabularies_in_use_cost_a_sidecar_little_memory() -> None:
    # A sidecar runs beside every pod: encoders built from the vocabularies took ~100 MB
    # here; the tables are read in place from the extension, a lookup touching few pages.
    result = subprocess.run(
        [sys.executable, "-c", _FOOTPRINT_SCRIPT], capture_output=True, text=True, check=True
    )
    assert float(result.stdout) < 25, result.stdout
