"""The spend log end to end: real gateways write every request to SQLite or PostgreSQL, lose
nothing on SIGTERM, and `sidegate spend` answers who spent what."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import orjson
import psycopg
import pytest

from tests.e2e.procs import SIDEGATE, Process

ACME_KEY = "sk-acme-spend-key-0001"
BETA_KEY = "sk-beta-spend-key-0002"
PRICE_IN, PRICE_OUT = 0.5, 2.0
POSTGRES_URL = os.environ.get(
    "SIDEGATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)

CONFIG = """
upstreams:
  local: {{endpoints: ["{upstream}/v1"]}}
models:
  gpt-4o-mini:
    upstream: local
    upstream_model: mock-gpt
    price_per_1k: {{input: {price_in}, output: {price_out}}}
tenants:
  acme: {{keys: ["{acme}"]}}
  beta: {{keys: ["{beta}"]}}
cache: {{enabled: false}}
# Nothing is written before shutdown: the rows below can only come from the final flush.
spend: {{database_url: "{database_url}", flush_interval_seconds: 600, batch_size: 100000}}
"""


def _config(write_config: Callable[[str], Path], upstream: str, database_url: str) -> Path:
    return write_config(
        CONFIG.format(
            upstream=upstream,
            price_in=PRICE_IN,
            price_out=PRICE_OUT,
            acme=ACME_KEY,
            beta=BETA_KEY,
            database_url=database_url,
        )
    )


def _traffic(gateway: Process) -> dict[str, float]:
    """Requests from two tenants on fresh connections (spread over workers); cost per tenant."""
    plan = [(ACME_KEY, "acme", "first words"), (BETA_KEY, "beta", "more words here")] * 5
    spent = {"acme": 0.0, "beta": 0.0}
    for key, tenant, text in plan:
        with openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0) as client:
            answer = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": text}]
            )
        assert answer.usage is not None
        usage = answer.usage
        spent[tenant] += (
            usage.prompt_tokens * PRICE_IN + usage.completion_tokens * PRICE_OUT
        ) / 1e3
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key=ACME_KEY, max_retries=0) as client:
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "a stream"}], stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "a stream"
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(
                model="gpt-9", messages=[{"role": "user", "content": "x"}]
            )
    return spent


def _spend_cli(config: Path, *args: str) -> str:
    done = subprocess.run(
        [*SIDEGATE, "spend", "--config", str(config), "--since", "1h", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _check_rows(rows: list[dict[str, object]], spent: dict[str, float]) -> None:
    assert len(rows) == 12  # 10 answers, 1 stream, 1 unknown model: none lost on SIGTERM
    by_tenant = {t: [r for r in rows if r["tenant"] == t and r["status"] == 200] for t in spent}
    for tenant, cost in spent.items():
        assert sum(float(str(r["cost_usd"])) for r in by_tenant[tenant][:5]) == pytest.approx(cost)
        assert len({r["key_id"] for r in by_tenant[tenant]}) == 1
    assert len(by_tenant["acme"]) == 6  # five answers and the stream
    assert by_tenant["acme"][-1]["output_tokens"] == 2  # "a stream", the stream's tokens
    (missing,) = [r for r in rows if r["status"] == 404]
    assert missing["model"] == "gpt-9" and missing["upstream"] == "-"
    for row in rows:
        assert row["key_id"] not in (ACME_KEY, BETA_KEY)
        assert row["request_id"] and row["trace_id"] is None and row["created_at"]
        assert row["cache"] == "miss"


def _check_report(config: Path, spent: dict[str, float]) -> None:
    table = _spend_cli(config, "--by", "tenant")
    assert table.splitlines()[0].split() == [
        "tenant",
        "requests",
        "errors",
        "input_tokens",
        "output_tokens",
        "cost_usd",
    ]
    report = orjson.loads(_spend_cli(config, "--by", "tenant", "--format", "json"))
    costs = {entry["group"]: entry["cost_usd"] for entry in report}
    assert costs["beta"] == pytest.approx(spent["beta"])
    assert {entry["group"]: entry["requests"] for entry in report}["acme"] == 7
    by_model = orjson.loads(_spend_cli(config, "--by", "model", "--format", "json"))
    assert {entry["group"] for entry in by_model} == {"gpt-4o-mini", "gpt-9"}


def test_sqlite_spend_log_keeps_every_request_across_workers_and_sigterm(
    spawn: Callable[..., Process],
    mock_upstream: Process,
    write_config: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    database = tmp_path / "spend.db"
    config = _config(write_config, mock_upstream.url, f"sqlite:///{database}")
    gateway = spawn("serve", "--config", str(config), "--workers", "2")
    spent = _traffic(gateway)
    assert gateway.stop() in (0, -15)
    connection = sqlite3.connect(database)
    connection.row_factory = sqlite3.Row
    rows = [dict(r) for r in connection.execute("SELECT * FROM spend ORDER BY created_at")]
    connection.close()
    _check_rows(rows, spent)
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("spend.db*"))
    assert ACME_KEY.encode() not in raw and BETA_KEY.encode() not in raw
    _check_report(config, spent)


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL} (SIDEGATE_TEST_POSTGRES_URL): {exc}")
    name = f"sidegate_spend_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            base, _, _ = POSTGRES_URL.rpartition("/")
            yield f"{base}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_postgres_spend_log_keeps_every_request_across_sigterm(
    spawn: Callable[..., Process],
    mock_upstream: Process,
    write_config: Callable[[str], Path],
    postgres_database: str,
) -> None:
    config = _config(write_config, mock_upstream.url, postgres_database)
    gateway = spawn("serve", "--config", str(config), "--workers", "2")
    spent = _traffic(gateway)
    assert gateway.stop() in (0, -15)
    with psycopg.connect(postgres_database) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT * FROM spend ORDER BY created_at")
        names = [column.name for column in cursor.description or ()]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    _check_rows(rows, spent)
    _check_report(config, spent)
