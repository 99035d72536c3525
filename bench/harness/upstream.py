"""The upstream that is never the bottleneck, and nginx as the reverse proxy under test.

One nginx instance (on the load generator's core) answers canned OpenAI payloads:
`/v1/chat/completions` a chat completion, `/sse/v1/chat/completions` a 20-event SSE stream with a
usage chunk, and `/paced/v1/...` is relayed to `sidegate mock-upstream --tokens-per-second 50`
when that runs. Every system, including "direct", reaches the paced stream through that same hop,
so the hop cancels out of every "added" figure.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from bench.harness import procs

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
STREAM_EVENTS = 20
CHAT_ID = "chatcmpl-bench0001"
CREATED = 1_700_000_000


def chat_body() -> bytes:
    answer = {
        "id": CHAT_ID,
        "object": "chat.completion",
        "created": CREATED,
        "model": "gpt-4o-mini",
        "system_fingerprint": "fp_bench",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Load balancers spread requests across healthy servers so no "
                    "single machine becomes the bottleneck, and they retry elsewhere on failure.",
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 42, "completion_tokens": 24, "total_tokens": 66},
    }
    return json.dumps(answer, separators=(",", ":")).encode()


def sse_body() -> bytes:
    """20 content events, a finish event, a usage chunk and [DONE], as OpenAI sends them."""
    base = {
        "id": CHAT_ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "gpt-4o-mini",
        "system_fingerprint": "fp_bench",
    }
    events = []
    for index in range(STREAM_EVENTS):
        delta = {"content": f" word{index}"} if index else {"role": "assistant", "content": ""}
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
        events.append({**base, "choices": [choice]})
    events.append(
        {**base, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]}
    )
    usage = {"prompt_tokens": 42, "completion_tokens": STREAM_EVENTS - 1, "total_tokens": 61}
    events.append({**base, "choices": [], "usage": usage})
    lines = [f"data: {json.dumps(event, separators=(',', ':'))}\n\n" for event in events]
    return ("".join(lines) + "data: [DONE]\n\n").encode()


def _nginx_string(payload: bytes) -> str:
    text = payload.decode()
    if "'" in text or "$" in text or "\\" in text:
        raise ValueError("canned payloads must not need nginx escaping")
    return "'" + text.replace("\n", "\\n") + "'"


def _nginx_conf(workdir: Path, name: str, servers: str) -> Path:
    temp = workdir / f"{name}-temp"
    temp.mkdir(exist_ok=True)
    # Running as root, nginx would switch its worker to `nobody`, who cannot use our temp dir.
    user = "user root;" if os.geteuid() == 0 else ""
    conf = f"""
{user}
daemon off;
master_process on;
worker_processes 1;
pid {temp}/nginx.pid;
error_log {temp}/error.log warn;
events {{ worker_connections 8192; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    client_body_buffer_size 64k;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    open_file_cache max=16;
{servers}
}}
"""
    path = workdir / f"{name}.conf"
    path.write_text(conf)
    return path


def _proxy_block(prefix: str, target: str, buffering: bool) -> str:
    return f"""
        location {prefix} {{
            proxy_pass {target};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering {"on" if buffering else "off"};
        }}"""


@dataclass
class Upstream:
    proc: procs.Proc
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.stop()


def start_paced_mock(workdir: Path, python: str, cpus: str) -> tuple[procs.Proc, int] | None:
    """`sidegate mock-upstream --tokens-per-second 50 --stamp-events`, or None when it does not
    come up."""
    port = procs.free_port()
    argv = [python, "-m", "sidegate.cli", "mock-upstream", "--port", str(port)]
    argv += ["--tokens-per-second", "50", "--stamp-events"]
    proc = procs.start("mock-upstream", argv, cpus=cpus, workdir=workdir)
    if procs.wait_port(port, proc, timeout=20):
        return proc, port
    proc.stop()
    return None


def start_upstream(workdir: Path, cpus: str, paced_port: int | None) -> Upstream:
    port = procs.free_port()
    paced = ""
    if paced_port is not None:
        paced = f"""
    upstream paced {{ server 127.0.0.1:{paced_port}; keepalive 64; }}"""
        paced_location = _proxy_block("/paced/", "http://paced/", buffering=False)
    else:
        paced_location = ""
    # The stream is longer than an nginx config string may be, so it is a file; a POST cannot
    # fetch a static file, hence the 405 turned into an internal GET of it.
    stream_file = workdir / "stream.sse"
    stream_file.write_bytes(sse_body())
    servers = f"""{paced}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /v1/chat/completions {{
            default_type application/json;
            return 200 {_nginx_string(chat_body())};
        }}
        location = /sse/v1/chat/completions {{
            error_page 405 =200 /_canned/stream.sse;
            return 405;
        }}
        location = /_canned/stream.sse {{
            internal;
            default_type text/event-stream;
            alias {stream_file};
        }}{paced_location}
    }}"""
    conf = _nginx_conf(workdir, "upstream", servers)
    proc = procs.start(
        "upstream", [NGINX, "-p", str(workdir), "-c", str(conf)], cpus=cpus, workdir=workdir
    )
    if not procs.wait_port(port, proc, timeout=10):
        raise RuntimeError(f"the nginx upstream did not start:\n{proc.log_tail()}")
    return Upstream(proc=proc, port=port)


def nginx_proxy_argv(workdir: Path, port: int, upstream_port: int) -> list[str]:
    """An nginx reverse proxy with a keep-alive pool: the practical limit of a relay."""
    servers = f"""
    upstream backend {{ server 127.0.0.1:{upstream_port}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;{_proxy_block("/", "http://backend", True)}
        {_proxy_block("/sse/", "http://backend", False).strip()}
        {_proxy_block("/paced/", "http://backend", False).strip()}
    }}"""
    conf = _nginx_conf(workdir, "nginx-proxy", servers)
    return [NGINX, "-p", str(workdir), "-c", str(conf)]


def start_redis(workdir: Path, cpus: str) -> tuple[procs.Proc, int] | None:
    """A throw-away Redis for state shared by Sidegate's workers, or None without redis-server."""
    server = shutil.which("redis-server")
    if server is None:
        return None
    port = procs.free_port()
    argv = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(workdir)]  # fmt: skip
    proc = procs.start("redis", argv, cpus=cpus, workdir=workdir)
    if procs.wait_port(port, proc, timeout=10):
        return proc, port
    proc.stop()
    return None
