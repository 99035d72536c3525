"""The systems under test, how to start each one, and how the load generator addresses it.

Pass-throughs (direct, nginx, the aiohttp floor, the lean floor) forward the path unchanged, so
the request kind is chosen by path. Gateways (Sidegate, LiteLLM) route by model name, so the
kind is chosen by model and each gets a config with one model per canned upstream path.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from bench.harness import procs, upstream

BENCH_DIR = Path(__file__).resolve().parent.parent
LITELLM = BENCH_DIR / ".peers" / "litellm-venv" / "bin" / "litellm"
LEAN = BENCH_DIR / "passthrough_lean.py"
TUNNEL = BENCH_DIR / "passthrough_tunnel.py"
COMPACT = BENCH_DIR / "passthrough_compact.py"
FLOOR = BENCH_DIR / "passthrough_aiohttp.py"
SIDEGATE_KEY = "sk-bench-tenant-0001"
LITELLM_KEY = "sk-bench-litellm-0001"
# Two cores: the system under test on one, load generator and upstream on the other. On a single
# core everything shares it, and only the CPU-per-request figures stay meaningful.
TWO_CORES = (os.cpu_count() or 1) >= 2
SUT_CPUS = "1" if TWO_CORES else "0"
LOAD_CPUS = "0"
BOTH_CPUS = "0,1" if TWO_CORES else "0"
PACED_TEXT = (
    "Explain in one short paragraph why a reverse proxy keeps a pool of warm upstream "
    "connections instead of opening a new one for every request."
)


class Kind(StrEnum):
    CHAT = "chat"
    STREAM = "stream"
    PACED = "paced"


PATH_PREFIX = {Kind.CHAT: "", Kind.STREAM: "/sse", Kind.PACED: "/paced"}
MODEL = {Kind.CHAT: "bench-gpt", Kind.STREAM: "bench-gpt-stream", Kind.PACED: "bench-gpt-paced"}


def request_body(kind: Kind, model: str) -> bytes:
    if kind is Kind.PACED:
        messages = [{"role": "user", "content": PACED_TEXT}]
    else:
        messages = [
            {"role": "system", "content": "You are a concise assistant for network engineers."},
            {"role": "user", "content": "In two sentences, what does a load balancer do?"},
        ]
    body: dict[str, object] = {"model": model, "messages": messages, "max_tokens": 64}
    if kind is not Kind.CHAT:
        body["stream"] = True
    if kind is Kind.STREAM:
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Target:
    """What the load generator sends for one kind of request."""

    url: str
    body: bytes
    auth: str


@dataclass(frozen=True)
class Env:
    workdir: Path
    upstream_port: int
    redis_url: str | None = None
    python: str = sys.executable


@dataclass
class Running:
    name: str
    port: int
    proc: procs.Proc | None
    pid: int
    by_model: bool
    auth: str = ""

    def target(self, kind: Kind) -> Target:
        base = f"http://127.0.0.1:{self.port}"
        if self.by_model:
            return Target(f"{base}/v1/chat/completions", request_body(kind, MODEL[kind]), self.auth)
        url = f"{base}{PATH_PREFIX[kind]}/v1/chat/completions"
        return Target(url, request_body(kind, MODEL[Kind.CHAT]), self.auth)

    def pids(self) -> list[int]:
        return procs.process_tree(self.pid)

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()


Launcher = Callable[[Env, int], "tuple[list[str], dict[str, str]] | str"]


@dataclass(frozen=True)
class Spec:
    name: str
    role: str
    launch: Launcher | None
    by_model: bool = False
    auth: str = ""
    cpus: str = SUT_CPUS
    throughput_only: bool = False
    startup_seconds: float = 30.0
    peer: bool = False


def probe(target: Target, timeout: float) -> str | None:
    """Send one real request; None when it answers 2xx, else why not."""
    headers = {"Content-Type": "application/json"}
    if target.auth:
        headers["Authorization"] = f"Bearer {target.auth}"
    request = urllib.request.Request(target.url, data=target.body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            answer.read()
            return None
    except urllib.error.HTTPError as error:
        return f"HTTP {error.code}: {error.read()[:300].decode(errors='replace')}"
    except (OSError, urllib.error.URLError) as error:
        return str(error)


def start(spec: Spec, env: Env, direct: Running) -> Running | str:
    """Start a system and check it answers; return why not when it cannot."""
    if spec.launch is None:
        return direct
    port = procs.free_port()
    launched = spec.launch(env, port)
    if isinstance(launched, str):
        return launched
    argv, extra_env = launched
    proc = procs.start(spec.name, argv, cpus=spec.cpus, workdir=env.workdir, env=extra_env)
    running = Running(spec.name, port, proc, proc.pid, spec.by_model, spec.auth)
    deadline = time.monotonic() + spec.startup_seconds
    reason = "did not open its port"
    if procs.wait_port(port, proc, timeout=spec.startup_seconds):
        while time.monotonic() < deadline and proc.alive():
            failure = probe(running.target(Kind.CHAT), timeout=10)
            if failure is None:
                return running
            reason = failure
            time.sleep(0.3)
    if not proc.alive():
        reason = f"exited with code {proc.popen.returncode}"
    tail = proc.log_tail(3)
    proc.stop()
    return f"{reason}; {tail}" if tail else reason


def _nginx(env: Env, port: int) -> tuple[list[str], dict[str, str]]:
    return upstream.nginx_proxy_argv(env.workdir, port, env.upstream_port), {}


def _script(path: Path) -> Launcher:
    def launch(env: Env, port: int) -> tuple[list[str], dict[str, str]] | str:
        if not path.exists():
            return f"{path.name} is not there"
        url = f"http://127.0.0.1:{env.upstream_port}"
        return [env.python, str(path), "--port", str(port), "--upstream", url], {}

    return launch


def sidegate_config(env: Env, port: int, workers: int) -> dict[str, object]:
    """Defaults on: API-key auth, limits, token counting, metrics and JSON logs; no cache."""
    base = f"http://127.0.0.1:{env.upstream_port}"
    upstreams = {
        f"bench-{kind}": {"provider": "openai", "endpoints": [f"{base}{PATH_PREFIX[kind]}/v1"]}
        for kind in Kind
    }
    price = {"input": 0.00015, "output": 0.0006}
    models = {
        MODEL[kind]: {
            "upstream": f"bench-{kind}",
            "upstream_model": "gpt-4o-mini",
            "encoding": "o200k_base",
            "price_per_1k": price,
        }
        for kind in Kind
    }
    huge = 1_000_000_000
    plan = {
        "rpm": huge,
        "tpm": huge * 1000,
        "burst": huge,
        "max_concurrent": 100_000,
        "daily_budget_usd": 1_000_000_000,
    }
    return {
        "server": {"host": "127.0.0.1", "port": port, "workers": workers},
        "upstreams": upstreams,
        "models": models,
        "plans": {"bench": plan},
        "tenants": {"bench": {"plan": "bench", "keys": [SIDEGATE_KEY]}},
        "auth": {"mode": "keys"},
        # Workers must share their limits, so more than one needs Redis (serve refuses otherwise).
        "state": {"backend": "redis", "url": env.redis_url}
        if workers > 1
        else {"backend": "memory"},
        "cache": {"enabled": False},
        "telemetry": {"metrics": True, "log_format": "json", "log_level": "info"},
        "spend": {"database_url": f"sqlite:///{env.workdir}/spend-{port}.db"},
    }


def merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` applied key by key (nested mappings merge, the rest replaces)."""
    result = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def sidegate_launcher(workers: int, overrides: dict[str, Any] | None = None) -> Launcher:
    """Sidegate with the benchmark's config, `overrides` merged into it when given."""

    def launch(env: Env, port: int) -> tuple[list[str], dict[str, str]] | str:
        if workers > 1 and env.redis_url is None:
            return "needs redis-server for the limits its workers share (not installed)"
        config = env.workdir / f"sidegate-{port}.yaml"
        settings = sidegate_config(env, port, workers)
        if overrides:
            settings = merged(settings, overrides)
        # JSON is YAML, and needs no YAML writer here.
        config.write_text(json.dumps(settings, indent=2))
        argv = [
            env.python,
            "-m",
            "sidegate.cli",
            "serve",
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        if workers > 1:
            argv += ["--workers", str(workers)]
        return argv, {}

    return launch


def _litellm(env: Env, port: int) -> tuple[list[str], dict[str, str]] | str:
    if not LITELLM.exists():
        return "not installed (make bench-peers)"
    base = f"http://127.0.0.1:{env.upstream_port}"
    models = [
        {
            "model_name": MODEL[kind],
            "litellm_params": {
                "model": "openai/gpt-4o-mini",
                "api_base": f"{base}{PATH_PREFIX[kind]}/v1",
                "api_key": "sk-up",
            },
        }
        for kind in Kind
    ]
    config = {"model_list": models, "general_settings": {"master_key": LITELLM_KEY}}
    path = env.workdir / "litellm.yaml"
    path.write_text(json.dumps(config, indent=2))
    argv = [str(LITELLM), "--config", str(path), "--host", "127.0.0.1", "--port", str(port)]
    # The cost map would otherwise be fetched from the internet at start.
    quiet = {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "LITELLM_TELEMETRY": "False",
        "DISABLE_SCHEMA_UPDATE": "True",
    }
    return argv, quiet


SPECS: tuple[Spec, ...] = (
    Spec("direct", "ceiling: straight to the upstream", None),
    Spec("nginx", "practical limit: nginx reverse proxy", _nginx),
    Spec("aiohttp-floor", "Python floor: bare aiohttp+uvloop relay", _script(FLOOR)),
    Spec("lean-floor", "lean-transport reference relay", _script(LEAN)),
    Spec("tunnel-floor", "Python latency floor: bytes tunnelled, unread", _script(TUNNEL)),
    Spec("compact-path", "a gateway's critical path in a few Python calls", _script(COMPACT)),
    Spec(
        "sidegate", "Sidegate, defaults on", sidegate_launcher(1), by_model=True, auth=SIDEGATE_KEY
    ),
    Spec(
        "sidegate-w2",
        "Sidegate --workers 2, Redis state (both cores)",
        sidegate_launcher(2),
        by_model=True,
        auth=SIDEGATE_KEY,
        cpus=BOTH_CPUS,
        throughput_only=True,
    ),
    Spec(
        "litellm",
        "LiteLLM proxy (peer)",
        _litellm,
        by_model=True,
        auth=LITELLM_KEY,
        startup_seconds=120,
        peer=True,
    ),
)
SPEC_BY_NAME = {spec.name: spec for spec in SPECS}


def direct_running(up: upstream.Upstream) -> Running:
    return Running("direct", up.port, None, up.proc.pid, by_model=False)


def stop_all(running: list[Running]) -> None:
    for system in running:
        with contextlib.suppress(OSError):
            system.stop()


def start_alone(prefix: str) -> tuple[upstream.Upstream, Env]:
    """For the one-system tools (profile, instructions): this process on the load core, and
    the nginx upstream started in a fresh work directory."""
    os.sched_setaffinity(0, {int(LOAD_CPUS)})
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    up = upstream.start_upstream(workdir, LOAD_CPUS, None)
    return up, Env(workdir=workdir, upstream_port=up.port)
