"""Converting between streamed and whole answers, for the cache.

`assemble_stream` turns the events of a completed stream into the equivalent non-streamed JSON
answer (what the cache stores); `replay_stream` turns a stored answer back into well-formed SSE
for a streaming client: role, content, finish, a usage chunk only when asked, `[DONE]` last.

Both directions keep everything a client can see in the answer: content, refusals, tool and
legacy function calls, logprobs and any other message field (strings concatenate across deltas,
lists extend). A stream that is not provably complete — an error event, a choice that never
finished, a payload that is not a JSON object — assembles to None, so it is never stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import orjson

from sidegate.cache import CachedAnswer
from sidegate.inspection import Endpoint

_DONE: Final = b"data: [DONE]\n\n"
_HEAD_FIELDS: Final = ("id", "created", "model", "system_fingerprint", "service_tier")


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def assemble_stream(
    kind: Endpoint, payloads: Iterable[bytes], usage: dict[str, Any] | None
) -> bytes | None:
    """The non-streamed answer a completed stream stands for; None if it cannot be rebuilt."""
    if kind not in ("chat", "completions"):
        return None
    head: dict[str, Any] = {}
    choices: dict[int, dict[str, Any]] = {}
    for payload in payloads:
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(chunk, dict) or "error" in chunk:
            return None
        for field in _HEAD_FIELDS:
            if chunk.get(field) is not None and field not in head:
                head[field] = chunk[field]
        parts = chunk.get("choices") or ()
        if not isinstance(parts, list):
            return None
        for part in parts:
            if not isinstance(part, dict) or not _merge_part(kind, choices, part):
                return None
    if not choices or any(not c.get("finish_reason") for c in choices.values()):
        return None  # a choice never finished: the stream was cut short
    for choice in choices.values():
        choice.setdefault("logprobs", None)
        message = choice.get("message")
        if message is not None:
            message.setdefault("content", None)
            calls = message.get("tool_calls")
            if calls is not None:
                message["tool_calls"] = [calls[i] for i in sorted(calls)]
    answer: dict[str, Any] = {
        **head,
        "object": "chat.completion" if kind == "chat" else "text_completion",
        "choices": [choices[i] for i in sorted(choices)],
    }
    if usage is not None:
        answer["usage"] = _with_total(usage)
    return orjson.dumps(answer)


def _merge_part(kind: Endpoint, choices: dict[int, dict[str, Any]], part: dict[str, Any]) -> bool:
    index = part.get("index", 0)
    if not isinstance(index, int):
        return False
    choice = choices.setdefault(index, {"index": index, "finish_reason": None})
    if part.get("finish_reason"):
        choice["finish_reason"] = part["finish_reason"]
    logprobs = part.get("logprobs")
    if isinstance(logprobs, dict):
        merged = choice.get("logprobs") or {}
        _merge_fields(merged, logprobs)
        choice["logprobs"] = merged
    if kind == "completions":
        text = part.get("text")
        choice["text"] = choice.get("text", "") + (text if isinstance(text, str) else "")
        return True
    delta = part.get("delta") or {}
    if not isinstance(delta, dict):
        return False
    message = choice.setdefault("message", {"role": "assistant"})
    return _merge_delta(message, delta)


def _merge_delta(message: dict[str, Any], delta: dict[str, Any]) -> bool:
    for field, value in delta.items():
        if field == "role":
            if value:
                message["role"] = value
        elif field == "tool_calls":
            if value is not None and not _merge_tool_calls(message, value):
                return False
        elif field == "function_call":
            if isinstance(value, dict):
                call = message.setdefault("function_call", {})
                _merge_fields(call, value)
        elif value is not None:
            _merge_fields(message, {field: value})
    return True


def _merge_tool_calls(message: dict[str, Any], calls: Any) -> bool:
    if not isinstance(calls, list):
        return False
    merged: dict[int, dict[str, Any]] = message.setdefault("tool_calls", {})
    for call in calls:
        if not isinstance(call, dict):
            return False
        index = call.get("index", 0)
        if not isinstance(index, int):
            return False
        entry = merged.setdefault(
            index,
            {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
        )
        if call.get("id"):
            entry["id"] = call["id"]
        if call.get("type"):
            entry["type"] = call["type"]
        function = call.get("function") or {}
        if isinstance(function, dict):
            _merge_fields(entry["function"], function)
    return True


def _merge_fields(into: dict[str, Any], update: dict[str, Any]) -> None:
    """Streamed pieces add up: strings concatenate, lists extend, anything else is replaced."""
    for field, value in update.items():
        if value is None:
            into.setdefault(field, None)
            continue
        old = into.get(field)
        if isinstance(value, str) and isinstance(old, str):
            into[field] = old + value
        elif isinstance(value, list) and isinstance(old, list):
            into[field] = old + value
        else:
            into[field] = value


def _with_total(usage: dict[str, Any]) -> dict[str, Any]:
    if "total_tokens" in usage:
        return usage
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if isinstance(prompt, int) and isinstance(completion, int):
        return {**usage, "total_tokens": prompt + completion}
    return usage


def replay_stream(answer: CachedAnswer, *, include_usage: bool) -> bytes:
    """SSE events for a cached answer, as the upstream would have streamed it."""
    whole = orjson.loads(answer.body)
    head = {k: whole[k] for k in _HEAD_FIELDS if k in whole}
    completions = answer.kind == "completions"
    obj = "text_completion" if completions else "chat.completion.chunk"
    events: list[bytes] = []
    for choice in whole.get("choices", []):
        parts = _completion_parts(choice) if completions else _chat_parts(choice)
        events.extend(_event({**head, "object": obj, "choices": [part]}) for part in parts)
    if include_usage and whole.get("usage") is not None:
        events.append(_event({**head, "object": obj, "choices": [], "usage": whole["usage"]}))
    events.append(_DONE)
    return b"".join(events)


def _completion_parts(choice: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "index": choice.get("index", 0),
            "text": choice.get("text", ""),
            "logprobs": choice.get("logprobs"),
            "finish_reason": choice.get("finish_reason") or "stop",
        }
    ]


def _chat_parts(choice: dict[str, Any]) -> list[dict[str, Any]]:
    """Role first, then everything the message says in one delta, then the finish."""
    index = choice.get("index", 0)
    message = choice.get("message") or {}
    parts: list[dict[str, Any]] = [
        {
            "index": index,
            "delta": {"role": message.get("role", "assistant"), "content": ""},
            "logprobs": None,
            "finish_reason": None,
        }
    ]
    delta: dict[str, Any] = {}
    for field, value in message.items():
        if field == "role" or value is None or value in ("", []):
            continue
        if field == "tool_calls":
            delta[field] = [{**call, "index": i} for i, call in enumerate(value)]
        else:
            delta[field] = value
    if delta or choice.get("logprobs") is not None:
        parts.append(
            {
                "index": index,
                "delta": delta,
                "logprobs": choice.get("logprobs"),
                "finish_reason": None,
            }
        )
    parts.append(
        {
            "index": index,
            "delta": {},
            "logprobs": None,
            "finish_reason": choice.get("finish_reason") or "stop",
        }
    )
    return parts
