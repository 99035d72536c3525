"""The official `openai` SDK against a real `sidegate mock-upstream` process."""

from __future__ import annotations

import json
import math
import sys
import time
import urllib.request
from collections.abc import Iterator

import openai
import pytest
from tests.procs import Process, ProcessFailed, free_port, run_process, sidegate_command

from sidegate.tokens import Tokenizer

TEXT = "Zürich, 東京 and 🙂: the SDK must read every byte."


@pytest.fixture(scope="module")
def mock_process() -> Iterator[Process]:
    port = free_port()
    args = [*sidegate_command(), "mock-upstream", "--host", "127.0.0.1", "--port", str(port)]
    with run_process(args, f"http://127.0.0.1:{port}/health") as process:
        yield process


@pytest.fixture(scope="module")
def sdk(mock_process: Process) -> Iterator[openai.OpenAI]:
    # No retries: a steered 503 or a cut connection must surface, not be retried away.
    with openai.OpenAI(
        base_url=f"{mock_process.url}/v1", api_key="sk-mock", max_retries=0, timeout=30
    ) as client:
        yield client


def test_chat(sdk: openai.OpenAI) -> None:
    reply = sdk.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": TEXT}]
    )
    assert reply.model == "gpt-4o-mini"
    assert reply.choices[0].message.content == TEXT
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.completion_tokens == Tokenizer("o200k_base").count(TEXT)


def test_chat_stream_with_usage(sdk: openai.OpenAI) -> None:
    chunks = list(
        sdk.chat.completions.create(
            model="mock-gpt",
            messages=[{"role": "user", "content": TEXT}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    pieces = [c.choices[0].delta.content for c in chunks[1:] if c.choices]
    content = [p for p in pieces if p is not None]
    usage = chunks[-1].usage
    assert usage is not None
    assert chunks[-1].choices == []
    assert "".join(content) == TEXT
    assert len(content) == usage.completion_tokens == Tokenizer("o200k_base").count(TEXT)


def test_chat_stream_without_usage(sdk: openai.OpenAI) -> None:
    chunks = list(
        sdk.chat.completions.create(
            model="mock-gpt", messages=[{"role": "user", "content": "short one"}], stream=True
        )
    )
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "short one"


def test_max_tokens_and_n(sdk: openai.OpenAI) -> None:
    reply = sdk.chat.completions.create(
        model="mock-gpt",
        messages=[{"role": "user", "content": "one two three four"}],
        max_completion_tokens=2,
        n=2,
    )
    assert [c.message.content for c in reply.choices] == ["one two", "one two"]
    assert {c.finish_reason for c in reply.choices} == {"length"}


def test_legacy_completion(sdk: openai.OpenAI) -> None:
    reply = sdk.completions.create(model="mock-gpt", prompt="echo me")
    assert reply.choices[0].text == "echo me"
    streamed = list(sdk.completions.create(model="mock-gpt", prompt="echo me", stream=True))
    assert "".join(c.choices[0].text for c in streamed) == "echo me"


def test_embeddings_float_and_base64(sdk: openai.OpenAI) -> None:
    # The SDK asks for base64 unless told otherwise and decodes it to floats itself.
    packed = sdk.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    floats = sdk.embeddings.create(
        model="text-embedding-3-small", input=["a", "b"], encoding_format="float"
    )
    assert [d.embedding for d in packed.data] == [d.embedding for d in floats.data]
    assert len(packed.data[0].embedding) == 1536
    assert math.isclose(math.fsum(x * x for x in packed.data[0].embedding), 1.0, rel_tol=1e-5)
    small = sdk.embeddings.create(model="text-embedding-3-small", input="a", dimensions=64)
    assert len(small.data[0].embedding) == 64
    assert packed.usage.prompt_tokens == 2


def test_models(sdk: openai.OpenAI) -> None:
    assert "mock-gpt" in [m.id for m in sdk.models.list()]


def test_steered_status_is_an_api_error(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as unavailable:
        sdk.chat.completions.create(
            model="mock-gpt", messages=[{"role": "user", "content": "!status 503"}]
        )
    assert unavailable.value.status_code == 503
    with pytest.raises(openai.RateLimitError):
        sdk.completions.create(model="mock-gpt", prompt="!status 429 slow down")


def test_steered_sleep(sdk: openai.OpenAI) -> None:
    started = time.monotonic()
    reply = sdk.chat.completions.create(
        model="mock-gpt", messages=[{"role": "user", "content": "!sleep 400 rested"}]
    )
    assert time.monotonic() - started >= 0.35
    assert reply.choices[0].message.content == "rested"


def test_steered_drop_cuts_the_stream(sdk: openai.OpenAI) -> None:
    received: list[str] = []
    with pytest.raises(openai.APIError):
        for chunk in sdk.chat.completions.create(
            model="mock-gpt",
            messages=[{"role": "user", "content": "!sleep 100 !drop 3 a b c d e f"}],
            stream=True,
        ):
            received.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(received) == "a b c"
    with pytest.raises(openai.APIConnectionError):
        sdk.chat.completions.create(
            model="mock-gpt", messages=[{"role": "user", "content": "!drop 0 gone"}]
        )


def test_paced_process() -> None:
    port = free_port()
    args = [
        *sidegate_command(),
        "mock-upstream",
        "--port",
        str(port),
        "--latency-ms",
        "100",
        "--tokens-per-second",
        "20",
    ]
    with (
        run_process(args, f"http://127.0.0.1:{port}/health") as process,
        openai.OpenAI(base_url=f"{process.url}/v1", api_key="x", max_retries=0) as client,
    ):
        started = time.monotonic()
        arrivals = []
        for chunk in client.chat.completions.create(
            model="mock-gpt", messages=[{"role": "user", "content": "a b c d"}], stream=True
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                arrivals.append(time.monotonic() - started)
        assert len(arrivals) == 4
        # Four tokens at 50 ms after 100 ms of latency: the last cannot come before 300 ms.
        assert arrivals[-1] >= 0.27


def test_stamped_events_state_the_mock_clock_and_the_sdk_ignores_them() -> None:
    port = free_port()
    args = [*sidegate_command(), "mock-upstream", "--port", str(port)]
    args += ["--tokens-per-second", "50", "--stamp-events"]
    body = {
        "model": "mock-gpt",
        "messages": [{"role": "user", "content": "one two three"}],
        "stream": True,
    }
    with (
        run_process(args, f"http://127.0.0.1:{port}/health") as process,
        openai.OpenAI(base_url=f"{process.url}/v1", api_key="x", max_retries=0) as client,
    ):
        sent_request = time.monotonic_ns()
        stamps: list[tuple[int, int, int]] = []  # (arrived, sent, received here)
        request = urllib.request.Request(
            f"{process.url}/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            for raw in answer:
                line = raw.decode().rstrip("\n")
                if line.startswith(": mock-timing "):
                    fields = dict(part.split("=") for part in line.split()[2:])
                    stamps.append(
                        (int(fields["arrived_ns"]), int(fields["sent_ns"]), time.monotonic_ns())
                    )
        # The role chunk, three tokens, the closing events: one stamp for each write.
        assert len(stamps) == 5
        assert len({arrived for arrived, _, _ in stamps}) == 1
        for arrived, sent, received in stamps:
            assert sent_request <= arrived <= sent <= received  # one clock, the machine's
        sent_times = [sent for _, sent, _ in stamps]
        assert sent_times == sorted(sent_times)
        stream = client.chat.completions.create(**body)
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text == "one two three"


def test_process_stays_quiet(mock_process: Process, sdk: openai.OpenAI) -> None:
    """Faults the mock injects are not failures of the mock: nothing lands in its log."""
    with pytest.raises(openai.APIError):
        list(
            sdk.chat.completions.create(
                model="mock-gpt", messages=[{"role": "user", "content": "!drop 1 x y"}], stream=True
            )
        )
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model="mock-gpt", messages=[])
    output = mock_process.output()
    assert "Traceback" not in output
    assert output.strip().splitlines() == [
        f"sidegate mock-upstream listening on http://127.0.0.1:{mock_process.url.rsplit(':', 1)[1]}"
    ]


def test_run_process_reports_an_early_exit_with_its_output() -> None:
    args = [sys.executable, "-c", "print('boom', flush=True); raise SystemExit(3)"]
    with (
        pytest.raises(ProcessFailed, match=r"(?s)exited with 3.*boom"),
        run_process(args, f"http://127.0.0.1:{free_port()}/health"),
    ):
        pass
