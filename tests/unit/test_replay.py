from __future__ import annotations

import orjson

from sidegate.cache import CachedAnswer
from sidegate.replay import assemble_stream, replay_stream
from sidegate.upstream.sse import SseFramer


def _chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


def test_stream_assembles_into_the_whole_answer_and_replays_back() -> None:
    payloads = [
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"content": "Hel"}),
        _chunk({"content": "lo"}),
        _chunk({}, "stop"),
    ]
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    body = assemble_stream("chat", payloads, usage)
    assert body is not None
    whole = orjson.loads(body)
    assert whole["object"] == "chat.completion"
    assert whole["choices"][0]["message"] == {"role": "assistant", "content": "Hello"}
    assert whole["choices"][0]["finish_reason"] == "stop"
    assert whole["usage"] == usage

    answer = CachedAnswer("chat", body, 3, 2)
    framer = SseFramer(hide_usage=False)
    framer.feed(replay_stream(answer, include_usage=True))
    assert framer.done and framer.usage == usage
    text = "".join(
        c["delta"].get("content", "") for p in framer.payloads for c in orjson.loads(p)["choices"]
    )
    assert text == "Hello"
    without_usage = replay_stream(answer, include_usage=False)
    assert b'"usage"' not in without_usage and without_usage.endswith(b"data: [DONE]\n\n")


def test_tool_call_deltas_merge() -> None:
    payloads = [
        _chunk(
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ],
            }
        ),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        _chunk({}, "tool_calls"),
    ]
    body = assemble_stream("chat", payloads, None)
    assert body is not None
    call = orjson.loads(body)["choices"][0]["message"]["tool_calls"][0]
    assert call == {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    }
