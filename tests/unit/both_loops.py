"""Running an async test on asyncio's loop and on uvloop's (the one `sidegate serve` runs):
their transports differ in ways a protocol can trip over."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Coroutine, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any

import pytest
import uvloop

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}

Scenario = Callable[..., Coroutine[Any, Any, None]]
LoopFixtures = Mapping[str, Callable[[], AbstractAsyncContextManager[Any]]]


def loops_with(fixtures: LoopFixtures) -> Callable[[Scenario], Callable[..., None]]:
    """`on_both_loops`, where parameters named in `fixtures` are built inside the test's own
    loop (so they cannot be ordinary pytest fixtures)."""

    def decorate(scenario: Scenario) -> Callable[..., None]:
        params = inspect.signature(scenario).parameters
        inside = [name for name in params if name in fixtures]

        async def run(kwargs: dict[str, Any]) -> None:
            async with AsyncExitStack() as stack:
                for name in inside:
                    kwargs[name] = await stack.enter_async_context(fixtures[name]())
                await scenario(**kwargs)

        def test(loop: str, **kwargs: Any) -> None:
            with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
                runner.run(run(kwargs))

        outside = [param for name, param in params.items() if name not in fixtures]
        loop_param = inspect.Parameter("loop", inspect.Parameter.POSITIONAL_OR_KEYWORD)
        test.__signature__ = inspect.Signature([loop_param, *outside])  # type: ignore[attr-defined]
        test.__name__ = scenario.__name__
        test.__doc__ = scenario.__doc__
        return pytest.mark.parametrize("loop", list(LOOPS))(test)

    return decorate


on_both_loops = loops_with({})
