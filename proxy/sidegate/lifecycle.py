"""Process lifecycle state shared by the routes: draining flips readiness to 503."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Lifecycle:
    draining: bool = False
