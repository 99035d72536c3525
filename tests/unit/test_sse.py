from __future__ import annotations

import re

import orjson
from hypothesis import given
from hypothesis import strategies as st

from sidegate._native import sse_done_marker, sse_usage_at
from sidegate.tokens import Tokenizer
from sidegate.upstream.sse import SseFramer

# What the relay looks for, as patterns: the native searches must agree with them.
USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')
DONE_LINE = re.compile(rb"^data: *\[DONE\]\r?$", re.MULTILINE)


def _event(payload: object) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _chunk(text: str) -> bytes:
    return _event({"choices": [{"index": 0, "delta": {"content": text}}], "usage": None})


USAGE = _event({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}})
DONE = b"data: [DONE]\n\n"


def test_events_pass_through_whole_even_when_split_anywhere() -> None:
    stream = _chunk("hel") + _chunk("lo") + DONE
    for cut in range(1, len(stream)):
        framer = SseFramer(hide_usage=False)
        out = framer.feed(stream[:cut]) + framer.feed(stream[cut:])
        assert out == stream
        assert framer.done


def test_usage_chunk_is_hidden_only_when_asked() -> None:
    stream = _chunk("hi") + USAGE + DONE
    hidden = SseFramer(hide_usage=True)
    assert hidden.feed(stream) == _chunk("hi") + DONE
    assert hidden.usage == {"prompt_tokens": 5, "completion_tokens": 2}
    shown = SseFramer(hide_usage=False)
    assert shown.feed(stream) == stream
    assert shown.usage is not None


def test_completion_counted_from_deltas_when_no_usage() -> None:
    framer = SseFramer(hide_usage=False)
    framer.feed(_chunk("Hello") + _chunk(" wor") + _chunk("ld") + DONE)
    tokenizer = Tokenizer("o200k_base")
    assert framer.count_completion(tokenizer) == tokenizer.count("Hello world")


def test_crlf_delimited_streams() -> None:
    stream = (_chunk("a") + DONE).replace(b"\n\n", b"\r\n\r\n")
    framer = SseFramer(hide_usage=False)
    assert framer.feed(stream) == stream
    assert framer.done


def _crlf(events: bytes) -> bytes:
    return events.replace(b"\n\n", b"\r\n\r\n")


def test_crlf_events_pass_through_whole_and_usage_is_hidden_even_when_split_anywhere() -> None:
    # The framer learns the CRLF ending from the first event to end, wherever the read cut it.
    stream = _crlf(_chunk("hel") + _chunk("lo") + USAGE + DONE)
    for cut in range(1, len(stream)):
        framer = SseFramer(hide_usage=True)
        out = framer.feed(stream[:cut]) + framer.feed(stream[cut:])
        assert out == _crlf(_chunk("hel") + _chunk("lo") + DONE)
        assert framer.done and framer.usage == {"prompt_tokens": 5, "completion_tokens": 2}


def test_done_is_the_marker_event_not_the_text_in_a_delta() -> None:
    framer = SseFramer(hide_usage=False)
    framer.feed(_chunk("say [DONE] please"))
    assert not framer.done
    framer.feed(DONE)
    assert framer.done
    tight = SseFramer(hide_usage=False)
    tight.feed(_chunk("x") + b"data:[DONE]\n\n")  # the space after the colon is optional
    assert tight.done


def test_payloads_are_the_content_events_only() -> None:
    with_usage = _event({"choices": [{"index": 0, "delta": {}}], "usage": {"prompt_tokens": 1}})
    framer = SseFramer(hide_usage=True)
    relayed = framer.feed(_chunk("a") + b": keep-alive\n\n" + _chunk("b") + with_usage)
    relayed += framer.feed(USAGE + DONE)
    # The usage-only chunk is held back; a usage chunk with choices is content.
    assert relayed == _chunk("a") + b": keep-alive\n\n" + _chunk("b") + with_usage + DONE
    assert framer.payloads == [
        _chunk("a")[6:-2],
        _chunk("b")[6:-2],
        with_usage[6:-2],
    ]
    assert framer.usage == {"prompt_tokens": 5, "completion_tokens": 2}


PIECES = st.sampled_from(
    [b'"usage"', b"usage", b'"usage":', b" ", b"\n", b":", b"{", b"null", b'"', b"x", b"data: "]
)


@given(pieces=st.lists(PIECES, max_size=12), start=st.integers(0, 40))
def test_the_usage_object_is_found_where_the_pattern_search_finds_it(
    pieces: list[bytes], start: int
) -> None:
    data = b"".join(pieces)
    expected = USAGE_OBJECT.search(data, start)
    assert sse_usage_at(data, start) == (expected and expected.span())


DONE_PIECES = st.sampled_from(
    [b"data:", b"data: ", b" ", b"[DONE]", b"\n", b"\r", b"\r\n", b"x", b"{", b"\t", b"[", b"]"]
)


@given(pieces=st.lists(DONE_PIECES, max_size=12))
def test_the_done_marker_is_a_line_of_its_own(pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    assert sse_done_marker(data) == (DONE_LINE.search(data) is not None)


def test_a_stream_whose_first_line_ends_in_crlf_is_read_as_crlf_throughout() -> None:
    # An LF keep-alive comment before CRLF events: the line ending is taken from the first
    # piece, as one reading; the stream is not held back waiting for an LF blank line.
    stream = b":\n\n" + _crlf(_chunk("a") + DONE)
    framer = SseFramer(hide_usage=False)
    assert framer.feed(stream) == stream
    assert framer.done
