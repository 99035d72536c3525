"""Counting the event loop's turns while something is awaited: proof that it kept serving."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass


@dataclass
class Turns:
    count: int = 0


@contextlib.asynccontextmanager
async def counting_turns(interval: float = 0.0) -> AsyncIterator[Turns]:
    """A task that counts a turn every `interval` seconds until the block ends."""
    turns = Turns()

    async def count() -> None:
        while True:
            turns.count += 1
            await asyncio.sleep(interval)

    counter = asyncio.create_task(count())
    try:
        yield turns
    finally:
        counter.cancel()
