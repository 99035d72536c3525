"""`python -m bench.harness.ab`: Sidegate before and after a change, interleaved in one run.

Adds the system `sidegate-baseline`: Sidegate with its defaults on, importing the package from
another source root (`--baseline-source`, the `proxy` directory of a checkout of the earlier
commit) instead of this one. Every other argument goes to `python -m bench.harness`, so the
two take turns within each lane as any systems do:

    git worktree add /tmp/baseline <commit>
    cp proxy/sidegate/_native*.so /tmp/baseline/proxy/sidegate/   # or build it there
    .venv/bin/python -m bench.harness.ab --baseline-source /tmp/baseline/proxy \\
        --systems aiohttp-floor,sidegate-baseline,sidegate --soak-minutes 0

The baseline imports the extension found in its source root: copying this checkout's keeps
native changes out of the comparison (and needs the earlier code to use only what it offers).

`--variant name=<JSON object>` adds the system `sidegate-<name>`: this checkout with those
config overrides merged into the defaults-on config, to price a feature in CPU time:

    .venv/bin/python -m bench.harness.ab --systems sidegate,sidegate-nospend \\
        --variant 'nospend={"spend": {"enabled": false}}' --soak-minutes 0
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from bench.harness import cli, systems

BASELINE = "sidegate-baseline"


def baseline_spec(source: Path) -> systems.Spec:
    """The `sidegate` system, importing the `sidegate` package found under `source`."""
    current = systems.SPEC_BY_NAME["sidegate"]
    launch_current = current.launch
    assert launch_current is not None

    def launch(env: systems.Env, port: int) -> tuple[list[str], dict[str, str]] | str:
        if not (source / "sidegate" / "__init__.py").is_file():
            return f"no sidegate package under {source}"
        launched = launch_current(env, port)
        if isinstance(launched, str):
            return launched
        argv, extra = launched
        return argv, {**extra, "PYTHONPATH": str(source)}

    role = f"Sidegate, defaults on, from {source}"
    return dataclasses.replace(current, name=BASELINE, role=role, launch=launch)


def variant_spec(text: str) -> systems.Spec:
    """`name=<JSON object>`: the `sidegate` system with those config overrides."""
    name, sep, spec = text.partition("=")
    try:
        overrides = json.loads(spec) if sep and name else None
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--variant {name}: not JSON: {exc}") from None
    if not isinstance(overrides, dict):
        raise SystemExit(f"--variant expects name=<JSON object>, got {text!r}")
    current = systems.SPEC_BY_NAME["sidegate"]
    return dataclasses.replace(
        current,
        name=f"sidegate-{name}",
        role=f"Sidegate with {spec}",
        launch=systems.sidegate_launcher(1, overrides),
    )


def register(spec: systems.Spec) -> None:
    systems.SPECS = (*systems.SPECS, spec)
    systems.SPEC_BY_NAME[spec.name] = spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.harness.ab", description=__doc__)
    parser.add_argument("--baseline-source", type=Path)
    parser.add_argument("--variant", action="append", default=[])
    args, rest = parser.parse_known_args(argv)
    if args.baseline_source is not None:
        register(baseline_spec(args.baseline_source.resolve()))
    for text in args.variant:
        register(variant_spec(text))
    return cli.main(rest)


if __name__ == "__main__":
    sys.exit(main())
