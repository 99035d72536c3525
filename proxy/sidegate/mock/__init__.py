"""The deterministic OpenAI-compatible mock model server; `sidegate.mock_upstream` documents it."""

from sidegate.mock.app import MOCK_MODELS, build_mock_app, run_mock_upstream

__all__ = ["MOCK_MODELS", "build_mock_app", "run_mock_upstream"]
