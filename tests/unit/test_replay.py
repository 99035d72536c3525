from __future__ import annotations

from typing import Any

import orjson
from openai.types import Completion
from openai.types.chat import ChatCompletionChunk

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


def _completion_chunk(text: str, finish: str | None = None, logprobs: object = None) -> bytes:
    return orjson.dumps(
        {
            "id": "cmpl-1",
            "object": "text_completion",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}],
        }
    )


def _replayed_chunks(answer: CachedAnswer, *, include_usage: bool) -> list[dict[str, Any]]:
    """The replayed events, each validated as the openai SDK would parse it."""
    stream = replay_stream(answer, include_usage=include_usage)
    assert stream.endswith(b"data: [DONE]\n\n")
    assert stream.count(b"[DONE]") == 1
    events = [e for e in stream.split(b"\n\n") if e]
    assert all(e.startswith(b"data: ") for e in events)
    chunks = [orjson.loads(e[6:]) for e in events[:-1]]
    model = ChatCompletionChunk if answer.kind == "chat" else Completion
    for chunk in chunks:
        model.model_validate(chunk)
    return chunks


def test_a_stream_cut_before_every_choice_finished_is_not_assembled() -> None:
    payloads = [_chunk({"role": "assistant", "content": ""}), _chunk({"content": "Hel"})]
    assert assemble_stream("chat", payloads, None) is None
    assert assemble_stream("chat", [], None) is None
    assert assemble_stream("completions", [_completion_chunk("Hel")], None) is None


def test_a_stream_carrying_an_error_event_is_not_assembled() -> None:
    error = orjson.dumps({"error": {"message": "boom", "type": "api_error"}})
    payloads = [_chunk({"content": "Hel"}), error, _chunk({}, "stop")]
    assert assemble_stream("chat", payloads, None) is None
    assert assemble_stream("chat", [b"not json", _chunk({}, "stop")], None) is None
    assert assemble_stream("embeddings", [_chunk({}, "stop")], None) is None


def test_usage_gets_a_total_when_the_counter_supplied_it() -> None:
    body = assemble_stream(
        "chat", [_chunk({"content": "hi"}, "stop")], {"prompt_tokens": 4, "completion_tokens": 1}
    )
    assert body is not None
    assert orjson.loads(body)["usage"]["total_tokens"] == 5


def test_refusal_and_logprobs_survive_assembly_and_replay() -> None:
    def lp(token: str) -> dict[str, object]:
        return {"content": [{"token": token, "logprob": -0.1, "bytes": None, "top_logprobs": []}]}

    payloads = [
        orjson.dumps(
            {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "m",
                "choices": [
                    {"index": 0, "delta": {"refusal": "I can"}, "logprobs": lp("I can")},
                ],
            }
        ),
        orjson.dumps(
            {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "m",
                "choices": [
                    {"index": 0, "delta": {"refusal": "not."}, "logprobs": lp("not.")},
                ],
            }
        ),
        _chunk({}, "stop"),
    ]
    body = assemble_stream("chat", payloads, None)
    assert body is not None
    choice = orjson.loads(body)["choices"][0]
    assert choice["message"]["refusal"] == "I cannot."
    assert [t["token"] for t in choice["logprobs"]["content"]] == ["I can", "not."]

    chunks = _replayed_chunks(CachedAnswer("chat", body, 1, 2), include_usage=False)
    replayed = [c["choices"][0] for c in chunks]
    assert "".join(p["delta"].get("refusal") or "" for p in replayed) == "I cannot."
    tokens = [t["token"] for p in replayed if p["logprobs"] for t in p["logprobs"]["content"]]
    assert tokens == ["I can", "not."]


def test_several_choices_replay_each_with_its_own_finish() -> None:
    whole = {
        "id": "chatcmpl-9",
        "object": "chat.completion",
        "created": 7,
        "model": "m",
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": f"answer {i}"},
                "logprobs": None,
                "finish_reason": "stop",
            }
            for i in range(2)
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }
    answer = CachedAnswer("chat", orjson.dumps(whole), 3, 4)
    chunks = _replayed_chunks(answer, include_usage=True)
    texts: dict[int, str] = {}
    finishes: dict[int, str] = {}
    for chunk in chunks:
        for part in chunk["choices"]:
            texts[part["index"]] = texts.get(part["index"], "") + (
                part["delta"].get("content") or ""
            )
            if part["finish_reason"]:
                finishes[part["index"]] = part["finish_reason"]
    assert texts == {0: "answer 0", 1: "answer 1"}
    assert finishes == {0: "stop", 1: "stop"}
    assert chunks[-1]["usage"] == whole["usage"] and chunks[-1]["choices"] == []
    # Reassembling the replay gives the stored answer back.
    rebuilt = assemble_stream("chat", [orjson.dumps(c) for c in chunks[:-1]], chunks[-1]["usage"])
    assert rebuilt is not None and orjson.loads(rebuilt) == whole


def test_legacy_completion_round_trips_with_logprobs() -> None:
    logprobs = [
        {"tokens": ["Hel"], "token_logprobs": [-0.5], "top_logprobs": None, "text_offset": [0]},
        {"tokens": ["lo"], "token_logprobs": [-0.25], "top_logprobs": None, "text_offset": [3]},
    ]
    payloads = [
        _completion_chunk("Hel", logprobs=logprobs[0]),
        _completion_chunk("lo", "length", logprobs[1]),
    ]
    body = assemble_stream("completions", payloads, {"prompt_tokens": 1, "completion_tokens": 2})
    assert body is not None
    whole = orjson.loads(body)
    assert whole["object"] == "text_completion"
    choice = whole["choices"][0]
    assert choice["text"] == "Hello" and choice["finish_reason"] == "length"
    assert choice["logprobs"]["tokens"] == ["Hel", "lo"]
    assert choice["logprobs"]["text_offset"] == [0, 3]
    chunks = _replayed_chunks(CachedAnswer("completions", body, 1, 2), include_usage=True)
    assert chunks[0]["choices"][0]["text"] == "Hello"
    assert chunks[0]["choices"][0]["logprobs"]["token_logprobs"] == [-0.5, -0.25]
    assert chunks[-1]["usage"]["total_tokens"] == 3


def test_legacy_function_call_deltas_merge_and_replay() -> None:
    payloads = [
        _chunk({"role": "assistant", "function_call": {"name": "lookup", "arguments": ""}}),
        _chunk({"function_call": {"arguments": '{"q":'}}),
        _chunk({"function_call": {"arguments": '"x"}'}}),
        _chunk({}, "function_call"),
    ]
    body = assemble_stream("chat", payloads, None)
    assert body is not None
    message = orjson.loads(body)["choices"][0]["message"]
    assert message["function_call"] == {"name": "lookup", "arguments": '{"q":"x"}'}
    chunks = _replayed_chunks(CachedAnswer("chat", body, 0, 0), include_usage=False)
    calls = [c["choices"][0]["delta"].get("function_call") for c in chunks]
    assert {"name": "lookup", "arguments": '{"q":"x"}'} in calls
