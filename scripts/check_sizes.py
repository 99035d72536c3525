"""Fail when a module outgrows the size cap: 800 lines of Python, 800 non-test lines of Rust."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CAP = 800


def rust_code_lines(text: str) -> int:
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.strip() == "#[cfg(test)]":
            return index
    return len(lines)


def main() -> int:
    files = subprocess.run(
        ["git", "ls-files", "*.py", "*.rs"], capture_output=True, text=True, check=True
    ).stdout.split()
    over = []
    for name in files:
        path = Path(name)
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8")
        size = rust_code_lines(text) if name.endswith(".rs") else len(text.splitlines())
        if size > CAP:
            over.append(f"{name}: {size} lines (cap {CAP})")
    for line in over:
        print(line, file=sys.stderr)
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
