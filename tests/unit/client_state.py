"""The state a fake client connection shares with the lean server's: what the stream writers
read of it (the tests' fakes add their own ways of recording writes)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ClientState:
    http11: bool = True
    draining: bool = False
    closed: bool = False
    stream_started: bool = False
    keep_alive: bool = True
    writing_paused: bool = False
