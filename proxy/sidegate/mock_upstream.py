"""The deterministic OpenAI-compatible mock model server (being built)."""

from __future__ import annotations


def run_mock_upstream(
    *, host: str, port: int, latency_ms: float = 0.0, tokens_per_second: float = 0.0
) -> None:
    raise NotImplementedError("mock-upstream is being built")
