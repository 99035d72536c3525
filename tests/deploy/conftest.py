"""Each kustomization is rendered once per test session (kubectl takes a while per call)."""

from __future__ import annotations

import pytest

from tests.deploy.manifests import APPLIED, Doc, render


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Doc]]:
    """Rendered resources by directory name: sidecar, gateway, gpu-pool, aws-secrets-manager."""
    return {directory.name: render(directory) for directory in APPLIED}
