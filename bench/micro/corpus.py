# The multilingual corpus's full-width punctuation is the point: it splits CJK text into pieces.
# ruff: noqa: RUF001
"""Deterministic inputs for the micro-benchmarks: prose-and-code text, multilingual text and a
4 KB chat body."""

from __future__ import annotations

import random
from typing import Any

import orjson

_PROSE = (
    "Sidegate sits between applications and the models they call. It counts every token, "
    "applies each tenant's limits, and answers repeated questions from its cache. Latency "
    "matters: a gateway that adds milliseconds to every call is a gateway nobody keeps. "
    "We measured the hot path in isolation, then under load, and wrote down what we found. "
)
_CODE = (
    "def handle(request: Request) -> Response:\n"
    "    body = await request.read()\n"
    "    facts = inspect_request(body, 'chat')\n"
    "    if facts.stream:\n"
    "        return await relay(request, facts)  # SSE\n"
    "    return json_response({'ok': True, 'tokens': facts.prompt_tokens})\n\n"
)


def text(size: int, seed: int = 0) -> str:
    """About `size` characters of English prose mixed with Python code."""
    rng = random.Random(seed)
    parts: list[str] = []
    length = 0
    while length < size:
        part = rng.choice((_PROSE, _PROSE, _CODE))
        words = part.split(" ")
        rng.shuffle(words)
        chunk = " ".join(words)
        parts.append(chunk)
        length += len(chunk)
    return "".join(parts)[:size]


# Languages whose pieces mostly merge (a word is rarely one whole token), unlike English.
_MULTILINGUAL = (
    "天下大勢，分久必合，合久必分。東京は日本の首都です。今日はとても良い天気ですね、散歩に行きましょう。",
    "서울은 한국의 수도입니다. 오늘은 날씨가 좋네요, 산책하러 갑시다. ",
    "Привет мир, это проверка токенизатора на русском языке. ",
    "مرحبا بالعالم! هذه جملة عربية. नमस्ते दुनिया। यह हिन्दी का वाक्य है। ",
)


def multilingual(size: int, seed: int = 0) -> str:
    """About `size` characters of Chinese, Japanese, Korean, Russian, Arabic and Hindi."""
    rng = random.Random(seed)
    parts: list[str] = []
    length = 0
    while length < size:
        parts.append(rng.choice(_MULTILINGUAL))
        length += len(parts[-1])
    return "".join(parts)[:size]


def chat_payload(size: int = 4096) -> dict[str, Any]:
    """A chat request of about `size` bytes as JSON: a system prompt, a few turns, a tool."""
    turns = [
        {"role": "system", "content": text(600, 1)},
        {"role": "user", "content": text(700, 2), "name": "analyst"},
        {"role": "assistant", "content": text(700, 3)},
        {"role": "user", "content": text(700, 4)},
    ]
    payload: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": turns,
        "temperature": 0.2,
        "max_tokens": 512,
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": "tenant-42",
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "lookup_order",
                    "description": "Find an order by its id.",
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "order_id": {"type": "string", "description": "The order id."},
                            "region": {"type": "string", "enum": ["eu", "us", "apac"]},
                        },
                    },
                },
            }
        ],
    }
    body = orjson.dumps(payload)
    filler = size - len(body)
    if filler > 0:
        turns.append({"role": "user", "content": text(filler, 5)})
    return payload


def chat_body(size: int = 4096) -> bytes:
    return orjson.dumps(chat_payload(size))
