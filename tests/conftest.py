"""Shared fixtures: paths to the reference data in ../shared."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
TIKTOKEN_DATA = SHARED / "data" / "tiktoken"


@pytest.fixture(scope="session")
def tiktoken_cache(monkeypatch_session: pytest.MonkeyPatch) -> Path:
    """tiktoken's offline cache; without it tiktoken would try to download the rank files."""
    if not any(TIKTOKEN_DATA.glob("*")):
        pytest.fail(
            f"tiktoken reference data not found at {TIKTOKEN_DATA}: the tests compare against "
            "the rank files in ../shared/data/tiktoken (the checkout's sibling `shared/`)",
            pytrace=False,
        )
    monkeypatch_session.setenv("TIKTOKEN_CACHE_DIR", str(TIKTOKEN_DATA))
    return TIKTOKEN_DATA


@pytest.fixture(scope="session")
def monkeypatch_session() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch
