"""Process lifecycle: draining flips readiness to 503, and the garbage collector is set for
serving once the app has started.

Two things made CPython's collector cost ~26 µs per request under load (measured with
`gc.callbacks` on the benchmark's chat lane, c=64), with pauses of ~45 ms:

- Everything start-up builds (modules, settings, metrics, pools: ~53,000 objects) lives as
  long as the process, yet every full collection walked it again. `gc.freeze()` moves it to
  the permanent generation, which collections skip.
- With the default young-generation threshold (700 container allocations), the objects of
  the requests in flight are caught alive several times a second, then walked again in the
  older generations. At `YOUNG_THRESHOLD` almost all of them are freed by reference counting
  first: collections drop from ~190 a second to almost none.

Both are undone at clean-up, so a process that builds many apps (tests, an embedding
program) collects their cycles as usual.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import Final

from aiohttp import web

YOUNG_THRESHOLD: Final = 20_000


@dataclass(slots=True)
class Lifecycle:
    draining: bool = False


_DEFAULT_THRESHOLDS: Final = gc.get_threshold()


async def settle_collector(app: web.Application) -> None:
    """An `on_startup` hook, after every cleanup context has built its part."""
    gc.collect()  # what start-up threw away is freed, not frozen
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *_DEFAULT_THRESHOLDS[1:])


async def restore_collector(app: web.Application) -> None:
    """An `on_cleanup` hook: what was frozen can be collected again, as often as before."""
    gc.set_threshold(*_DEFAULT_THRESHOLDS)
    gc.unfreeze()
