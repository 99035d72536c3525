"""`POST /v1/chat/completions` and `POST /v1/completions`: echo the input, as OpenAI would."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, Final, Literal

from aiohttp import web

from sidegate.errors import InvalidRequestError
from sidegate.mock.replies import Completion, generate
from sidegate.mock.steering import Steering, parse_steering, steered_error_body
from sidegate.mock.stream import FINGERPRINT, send_stream
from sidegate.mock.wire import (
    MOCK_CONFIG_KEY,
    choice_count,
    cut_connection,
    is_token_ids,
    json_response,
    optional_int,
    read_object,
    require_model,
    stream_flags,
    wait_before_answer,
)
from sidegate.tokens import Tokenizer

_MAX_TOKENS: Final = 1 << 31


async def chat_completions(request: web.Request) -> web.StreamResponse:
    payload = await read_object(request)
    model = require_model(payload)
    messages = _messages(payload)
    max_tokens = optional_int(payload, "max_completion_tokens", 1, _MAX_TOKENS)
    if max_tokens is None:
        max_tokens = optional_int(payload, "max_tokens", 1, _MAX_TOKENS)
    tokenizer = Tokenizer.for_model(model)
    steering = parse_steering(_last_user_text(messages))
    return await _answer(
        request,
        payload,
        kind="chat",
        model=model,
        steerings=[steering],
        prompt_tokens=tokenizer.count_chat(messages),
        max_tokens=max_tokens,
        tokenizer=tokenizer,
    )


async def completions(request: web.Request) -> web.StreamResponse:
    payload = await read_object(request)
    model = require_model(payload)
    max_tokens = optional_int(payload, "max_tokens", 1, _MAX_TOKENS)
    tokenizer = Tokenizer.for_model(model)
    prompts, prompt_tokens = _prompts(payload, tokenizer)
    return await _answer(
        request,
        payload,
        kind="text",
        model=model,
        steerings=[parse_steering(prompt) for prompt in prompts],
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        tokenizer=tokenizer,
    )


async def _answer(
    request: web.Request,
    payload: dict[str, Any],
    *,
    kind: Literal["chat", "text"],
    model: str,
    steerings: list[Steering],
    prompt_tokens: int,
    max_tokens: int | None,
    tokenizer: Tokenizer,
) -> web.StreamResponse:
    n = choice_count(payload)
    stream, include_usage = stream_flags(payload)
    config = request.app[MOCK_CONFIG_KEY]
    # With several prompts the last one steers, as the last user message does in a chat.
    steering = steerings[-1]
    await wait_before_answer(config, steering.sleep_ms)
    if steering.status is not None:
        return json_response(steered_error_body(steering.status), status=steering.status)
    if steering.drop_after is not None and not stream:
        await cut_connection(request)
        return web.Response()
    replies = [generate(tokenizer, s.text, max_tokens, pieces=stream) for s in steerings]
    completion = Completion(
        kind=kind,
        id=("chatcmpl-" if kind == "chat" else "cmpl-") + os.urandom(12).hex(),
        created=int(time.time()),
        model=model,
        choices=tuple(
            (number * n + copy, reply) for number, reply in enumerate(replies) for copy in range(n)
        ),
        prompt_tokens=prompt_tokens,
        include_usage=include_usage,
    )
    if stream:
        return await send_stream(
            request, completion, config, steering.drop_after, steering.linger_ms, steering.gzip
        )
    if config.seconds_per_token > 0:
        # Choices are generated side by side: the answer takes as long as the longest one.
        await asyncio.sleep(max(reply.tokens for reply in replies) * config.seconds_per_token)
    answer = json_response(_chat_body(completion) if kind == "chat" else _text_body(completion))
    if steering.gzip:
        answer.enable_compression(web.ContentCoding.gzip)
    return answer


def _chat_body(completion: Completion) -> dict[str, Any]:
    return {
        "id": completion.id,
        "object": "chat.completion",
        "created": completion.created,
        "model": completion.model,
        "choices": [
            {
                "index": index,
                "message": {
                    "role": "assistant",
                    "content": reply.text,
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": reply.finish_reason,
            }
            for index, reply in completion.choices
        ],
        "usage": completion.usage(),
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }


def _text_body(completion: Completion) -> dict[str, Any]:
    return {
        "id": completion.id,
        "object": "text_completion",
        "created": completion.created,
        "model": completion.model,
        "choices": [
            {
                "text": reply.text,
                "index": index,
                "logprobs": None,
                "finish_reason": reply.finish_reason,
            }
            for index, reply in completion.choices
        ],
        "usage": completion.usage(),
        "system_fingerprint": FINGERPRINT,
    }


def _messages(payload: dict[str, Any]) -> list[dict[str, Any]]:
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError(
            "'messages' must be a non-empty array of message objects.", param="messages"
        )
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequestError(
                f"messages[{index}] must be an object with a string 'role'.",
                param=f"messages.[{index}]",
            )
    return messages


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    """The text of the last user message: its string content, or its text parts joined."""
    for message in reversed(messages):
        if message["role"] == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(
                    part["text"]
                    for part in content
                    if isinstance(part, dict)
                    and part.get("type") == "text"
                    and isinstance(part.get("text"), str)
                )
            return ""
    return ""


def _prompts(payload: dict[str, Any], tokenizer: Tokenizer) -> tuple[list[str], int]:
    """The prompts (token-id prompts decoded to text) and their token count."""
    prompt = payload.get("prompt")
    if isinstance(prompt, str):
        return [prompt], tokenizer.count(prompt)
    if isinstance(prompt, list) and prompt:
        if all(isinstance(item, str) for item in prompt):
            return prompt, sum(tokenizer.count(item) for item in prompt)
        if is_token_ids(prompt):
            return [_decode(tokenizer, prompt)], len(prompt)
        if all(isinstance(item, list) and item and is_token_ids(item) for item in prompt):
            return [_decode(tokenizer, ids) for ids in prompt], sum(len(ids) for ids in prompt)
    raise InvalidRequestError(
        "'prompt' must be a string, or a non-empty array of strings or of token ids.",
        param="prompt",
    )


def _decode(tokenizer: Tokenizer, ids: list[int]) -> str:
    try:
        return tokenizer.decode_bytes(ids).decode("utf-8", "replace")
    except ValueError:
        raise InvalidRequestError(
            f"'prompt' holds a token id unknown to {tokenizer.name}.", param="prompt"
        ) from None
