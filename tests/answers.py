"""HTTP answers read off a raw socket by llhttp, for tests that speak HTTP/1.1 by hand."""

from __future__ import annotations

import httptools
import orjson


class Answer:
    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""
        self.complete = False

    def json(self) -> dict[str, object]:
        payload = orjson.loads(self.body)
        assert isinstance(payload, dict)
        return payload


class Answers:
    """The answers in the bytes fed so far, in order; `answers[-1]` may be incomplete."""

    def __init__(self) -> None:
        self.answers: list[Answer] = []
        self._parser = httptools.HttpResponseParser(self)

    def feed(self, data: bytes) -> None:
        self._parser.feed_data(data)

    def completed(self) -> int:
        return sum(answer.complete for answer in self.answers)

    def on_message_begin(self) -> None:
        self.answers.append(Answer())

    def on_status(self, _: bytes) -> None:
        self.answers[-1].status = self._parser.get_status_code()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.answers[-1].headers[name.decode().lower()] = value.decode()

    def on_body(self, body: bytes) -> None:
        self.answers[-1].body += body

    def on_message_complete(self) -> None:
        self.answers[-1].complete = True
