"""Steering words: fault injection written into the last user message (or the prompt).

A message may *start* with any number of commands, each a word and a whole number:

    !status 503   answer that HTTP status (400-599) with an OpenAI-shaped error body
    !sleep 1500   wait that many milliseconds before answering
    !drop 3       stream 3 token chunks, then cut the TCP connection (non-streaming: cut it
                  before any byte of the response)
    !linger 500   stream every event, [DONE] included, then wait that many milliseconds
                  before ending the response (as an upstream may, after its last event)
    !gzip 1       send the answer gzip-encoded whatever the request's Accept-Encoding says
                  (as a misconfigured server or proxy may)

Commands combine (`!sleep 200 !drop 2 hello`); when one is repeated the last one wins. They are
read only at the start of the text so that a message which merely talks about `!status` is echoed
untouched, and they are removed from the reply: the echoed text is what follows the last
command, without its leading whitespace. Prompt-token usage still counts the message as sent,
because that is what the upstream received. A `!status` number outside 400-599 is not a command
and stays part of the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

_COMMAND: Final = re.compile(r"\s*!(status|sleep|drop|linger|gzip)[ \t]+(\d{1,9})(?=\s|$)")

# OpenAI's error `type` and `code` for the statuses clients treat specially.
_ERROR_KINDS: Final[dict[int, tuple[str, str | None]]] = {
    400: ("invalid_request_error", None),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "model_not_found"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


@dataclass(frozen=True, slots=True)
class Steering:
    """What the commands at the start of a text ask for, and the text that remains."""

    text: str
    status: int | None = None
    sleep_ms: int = 0
    drop_after: int | None = None
    linger_ms: int = 0
    gzip: bool = False


def parse_steering(text: str) -> Steering:
    position = 0
    status: int | None = None
    sleep_ms = 0
    drop_after: int | None = None
    linger_ms = 0
    gzip = False
    while match := _COMMAND.match(text, position):
        word, number = match.group(1), int(match.group(2))
        if word == "status":
            if not 400 <= number <= 599:
                break
            status = number
        elif word == "sleep":
            sleep_ms = number
        elif word == "linger":
            linger_ms = number
        elif word == "gzip":
            gzip = number != 0
        else:
            drop_after = number
        position = match.end()
    if position == 0:
        return Steering(text=text)
    return Steering(
        text=text[position:].lstrip(),
        status=status,
        sleep_ms=sleep_ms,
        drop_after=drop_after,
        linger_ms=linger_ms,
        gzip=gzip,
    )


def steered_error_body(status: int) -> dict[str, Any]:
    """The body OpenAI would send with `status`; 5xx are `server_error` as OpenAI labels them."""
    default = ("server_error", None) if status >= 500 else ("invalid_request_error", None)
    error_type, code = _ERROR_KINDS.get(status, default)
    return {
        "error": {
            "message": f"The mock upstream answered {status} as asked (!status {status}).",
            "type": error_type,
            "param": None,
            "code": code,
        }
    }
