"""Converting between streamed and whole answers, for the cache.

`assemble_stream` turns the events of a completed stream into the equivalent non-streamed JSON
answer (what the cache stores); `replay_stream` turns a stored answer back into well-formed SSE
for a streaming client: role, content, finish, a usage chunk only when asked, `[DONE]` last.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from sidegate.cache import CachedAnswer
from sidegate.inspection import Endpoint

_DONE = b"data: [DONE]\n\n"


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def assemble_stream(
    kind: Endpoint, payloads: Iterable[bytes], usage: dict[str, Any] | None
) -> bytes | None:
    """The non-streamed answer a completed stream stands for; None if it cannot be rebuilt."""
    head: dict[str, Any] = {}
    choices: dict[int, dict[str, Any]] = {}
    for payload in payloads:
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(chunk, dict):
            return None
        for field in ("id", "created", "model", "system_fingerprint"):
            if field in chunk and field not in head:
                head[field] = chunk[field]
        for part in chunk.get("choices") or ():
            index = part.get("index", 0)
            choice = choices.setdefault(index, {"index": index, "finish_reason": None})
            if part.get("finish_reason"):
                choice["finish_reason"] = part["finish_reason"]
            if kind == "completions":
                choice["text"] = choice.get("text", "") + (part.get("text") or "")
                choice.setdefault("logprobs", None)
            else:
                _merge_delta(choice.setdefault("message", {"role": "assistant"}), part)
    if kind == "completions":
        obj = "text_completion"
    elif kind == "chat":
        obj = "chat.completion"
        for choice in choices.values():
            message = choice["message"]
            message.setdefault("content", None)
            choice.setdefault("logprobs", None)
            if "tool_calls" in message:
                message["tool_calls"] = [
                    message["tool_calls"][i] for i in sorted(message["tool_calls"])
                ]
    else:
        return None
    answer = {
        **head,
        "object": obj,
        "choices": [choices[i] for i in sorted(choices)],
    }
    if usage is not None:
        answer["usage"] = usage
    return orjson.dumps(answer)


def _merge_delta(message: dict[str, Any], part: dict[str, Any]) -> None:
    delta = part.get("delta") or {}
    if delta.get("role"):
        message["role"] = delta["role"]
    for field in ("content", "refusal"):
        if delta.get(field) is not None:
            message[field] = message.get(field, "") + delta[field]
    for call in delta.get("tool_calls") or ():
        calls = message.setdefault("tool_calls", {})
        entry = calls.setdefault(
            call.get("index", 0),
            {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
        )
        if call.get("id"):
            entry["id"] = call["id"]
        function = call.get("function") or {}
        entry["function"]["name"] += function.get("name") or ""
        entry["function"]["arguments"] += function.get("arguments") or ""


def replay_stream(answer: CachedAnswer, *, include_usage: bool) -> bytes:
    """SSE events for a cached answer, as the upstream would have streamed it."""
    whole = orjson.loads(answer.body)
    head = {k: whole[k] for k in ("id", "created", "model", "system_fingerprint") if k in whole}
    events: list[bytes] = []
    if answer.kind == "completions":
        for choice in whole.get("choices", []):
            events.append(
                _event(
                    {
                        **head,
                        "object": "text_completion",
                        "choices": [
                            {
                                "index": choice.get("index", 0),
                                "text": choice.get("text", ""),
                                "logprobs": None,
                                "finish_reason": choice.get("finish_reason"),
                            }
                        ],
                    }
                )
            )
    else:
        obj = "chat.completion.chunk"
        for choice in whole.get("choices", []):
            index = choice.get("index", 0)
            message = choice.get("message") or {}
            delta: dict[str, Any] = {"role": message.get("role", "assistant"), "content": ""}
            events.append(
                _event(
                    {
                        **head,
                        "object": obj,
                        "choices": [
                            {
                                "index": index,
                                "delta": delta,
                                "logprobs": None,
                                "finish_reason": None,
                            }
                        ],
                    }
                )
            )
            body: dict[str, Any] = {}
            if message.get("content"):
                body["content"] = message["content"]
            if message.get("tool_calls"):
                body["tool_calls"] = [
                    {**call, "index": i} for i, call in enumerate(message["tool_calls"])
                ]
            if body:
                events.append(
                    _event(
                        {
                            **head,
                            "object": obj,
                            "choices": [
                                {
                                    "index": index,
                                    "delta": body,
                                    "logprobs": None,
                                    "finish_reason": None,
                                }
                            ],
                        }
                    )
                )
            events.append(
                _event(
                    {
                        **head,
                        "object": obj,
                        "choices": [
                            {
                                "index": index,
                                "delta": {},
                                "logprobs": None,
                                "finish_reason": choice.get("finish_reason") or "stop",
                            }
                        ],
                    }
                )
            )
    if include_usage and whole.get("usage") is not None:
        obj = "text_completion" if answer.kind == "completions" else "chat.completion.chunk"
        events.append(_event({**head, "object": obj, "choices": [], "usage": whole["usage"]}))
    events.append(_DONE)
    return b"".join(events)
