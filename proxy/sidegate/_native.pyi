"""Stubs for the Rust extension built from `native/` (checked with mypy.stubtest)."""

from collections.abc import Callable, Iterator
from typing import final

from sidegate.exchange import Exchange

__all__ = [
    "CLIENT_ONLY",
    "HOP_BY_HOP",
    "UPSTREAM_ONLY",
    "AccessLines",
    "BucketObserver",
    "ChunkedBody",
    "Decision",
    "HeadHeaders",
    "InvalidBodyError",
    "LimitShape",
    "LimitTicket",
    "Limiter",
    "MetricValue",
    "NativeError",
    "Policy",
    "RequestFacts",
    "SqliteSpendWriter",
    "Tokenizer",
    "cache_key",
    "chunk_frame",
    "encoding_for_model",
    "header_block",
    "http_date_line",
    "inspect",
    "prompt_memo_len",
    "request_head",
    "response_head",
    "set_prompt_memo_capacity",
    "splice_body",
    "sqlite_time",
    "sse_complete",
    "sse_done_marker",
    "sse_usage_at",
    "usage_counts",
]

class NativeError(ValueError):
    """Base of every error raised by sidegate._native."""

class InvalidBodyError(NativeError):
    """A request body the proxy cannot serve; ``args`` is ``(message, param)``."""

@final
class Tokenizer:
    """An exact tiktoken-compatible BPE tokenizer for one encoding."""

    def __new__(cls, encoding: str) -> Tokenizer: ...
    @property
    def name(self) -> str:
        """The encoding's name, e.g. ``o200k_base``."""
    def count(self, text: str) -> int:
        """Number of tokens in ``text`` (equal to ``len(tiktoken.encode_ordinary(text))``)."""
    def count_chat_json(self, messages: bytes, tools: bytes | None = None) -> int:
        """Prompt tokens of JSON-encoded ``messages`` (and ``tools``) by OpenAI's chat formula.

        Raises ``InvalidBodyError`` when either is not valid JSON or ``messages`` is not an array.
        """
    def count_prefix(self, text: str) -> tuple[int, int]:
        """``(tokens, chars)``: tokens of the first ``chars`` characters of ``text``, a prefix
        that no continuation can re-tokenize, so
        ``count(text + more) == tokens + count(text[chars:] + more)``."""
    def decode_bytes(self, tokens: list[int]) -> bytes:
        """The bytes ``tokens`` stand for; a token may end inside a multi-byte character."""
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, identical to ``tiktoken.encode_ordinary(text)``."""

@final
class Policy:
    """The limits of one plan: ``requests`` and ``tokens`` per ``period`` seconds (bursts of
    ``request_burst`` requests, default ``requests``) and ``max_concurrent`` in flight."""

    def __new__(
        cls,
        requests: int | None = None,
        tokens: int | None = None,
        max_concurrent: int | None = None,
        request_burst: int | None = None,
        period: float = 60.0,
    ) -> Policy: ...

@final
class Decision:
    """The outcome of an acquire (or a peek); limit states are ``(limit, remaining, reset)``."""

    @property
    def allowed(self) -> bool: ...
    @property
    def denied_by(self) -> str | None:
        """``requests``, ``tokens``, ``concurrency`` or ``capacity``; None when admitted."""
    @property
    def too_large(self) -> bool:
        """The token cost exceeds the bucket: no wait will admit it."""
    @property
    def retry_after(self) -> float:
        """Seconds until the rate limits would admit a retry (0 for concurrency/capacity)."""
    @property
    def in_flight(self) -> int: ...
    @property
    def requests(self) -> tuple[int, int, float] | None: ...
    @property
    def tokens(self) -> tuple[int, int, float] | None: ...

@final
class LimitShape:
    """A plan's limits on one model, laid out once (see ``sidegate.limits.local``).

    ``scopes``: per key a request charges, ``(suffix after the tenant's name, policy,
    reserves tokens)``. ``headers``: per kind of ``x-ratelimit-*`` header, ``(tokens kind,
    [(scope position, its tokens limit, per-minute limit stated)])``; the tightest speaks.
    """

    def __new__(
        cls,
        scopes: list[tuple[str, Policy, bool]],
        headers: list[tuple[bool, list[tuple[int, bool, int]]]],
    ) -> LimitShape: ...
    def __len__(self) -> int: ...

@final
class Limiter:
    """A thread-safe table of GCRA states keyed by string (see ``sidegate.ratelimit``)."""

    def __new__(cls, max_keys: int = 1_000_000) -> Limiter: ...
    def acquire(
        self, key: str, policy: Policy, tokens: int = 0, now: float | None = None
    ) -> Decision:
        """Charge every limit of ``policy`` or, when one refuses, none."""
    def acquire_all(
        self, asks: list[tuple[str, Policy, int]], now: float | None = None
    ) -> tuple[int | None, list[Decision]]:
        """Acquire ``(key, policy, tokens)`` asks all or nothing.

        Returns the index of the refused ask (None when every ask was admitted and charged)
        and one decision per ask up to and including the refused one.
        """
    def settle_shape(
        self, shape: LimitShape, tenant: str, reserved: int, used: int, now: float | None = None
    ) -> None:
        """Free the slots of ``shape``'s scopes for ``tenant`` and true up its tokens."""
    def release(
        self,
        key: str,
        policy: Policy,
        reserved: int = 0,
        used: int | None = None,
        now: float | None = None,
    ) -> None:
        """Free the concurrency slot and true up the token charge from reserved to used."""
    def true_up(
        self, key: str, policy: Policy, reserved: int, used: int, now: float | None = None
    ) -> None:
        """True up the token charge only."""
    def peek(self, key: str, policy: Policy, now: float | None = None) -> Decision:
        """The key's state, charging nothing."""
    def admit_ticket(
        self,
        shape: LimitShape,
        tenant: str,
        reserve: int,
        budget: float | None,
        on_alert: Callable[[str, float, float, float], object] | None = None,
    ) -> LimitTicket | tuple[str, int, float, float]:
        """Check ``tenant``'s ledger (block, daily ``budget``), then charge every scope of
        ``shape``, or nothing. Admitted: its ticket. Refused: ``(why, scope position or -1,
        retry after in seconds, spent today)``, ``why`` being ``blocked``, ``budget``,
        ``requests``, ``tokens``, ``concurrency`` or ``capacity``. ``on_alert(tenant, cost,
        budget, spent)`` runs when the ticket's settled cost crosses 80 % of ``budget``."""
    def ledger_bar(self, tenant: str, budget: float | None) -> tuple[str, float] | None:
        """``("blocked" | "budget", spent today)`` when the ledger refuses ``tenant``."""
    def ledger_reserve(self, tenant: str, tokens: int) -> None:
        """Count tokens reserved by a request admitted without ``admit_ticket``."""
    def ledger_spend(self, tenant: str, token_delta: int, cost_usd: float) -> float:
        """Add a cost and a token true-up to today's ledger; returns the spend after it."""
    def set_blocked(self, tenant: str, blocked: bool) -> None: ...
    def ledger_day(self, tenant: str) -> tuple[bool, float, int]:
        """``(blocked, spent today, tokens today)``; days are UTC."""
    def budgets(self) -> list[tuple[str, float, float]]:
        """``(tenant, daily budget, spent today)`` for each tenant admitted under a budget."""
    def __len__(self) -> int: ...

@final
class LimitTicket:
    """A request ``Limiter.admit_ticket`` admitted."""

    @property
    def headers(self) -> dict[str, str]:
        """Its ``x-ratelimit-*`` headers (a new dict on each read)."""
    @property
    def header_lines(self) -> bytes:
        """The same headers as ``name: value\\r\\n`` lines."""
    def settle(self, exchange: Exchange) -> None:
        """Free its slots, true up its reservation to the exchange's tokens and add its cost
        to the tenant's day (nothing spent for a cache hit or when ``upstream`` is ``-``).
        Only the first call counts."""

def header_block(headers: dict[str, str]) -> bytes:
    """``name: value\r\n`` for each header, UTF-8, in order; ValueError when a name or value
    holds a line break (response splitting)."""

def cache_key(body: bytes, endpoint: str) -> str:
    """The hex cache key of a raw ``body`` (the ``body_hash`` ``inspect`` returns).

    Raises ``InvalidBodyError`` when ``body`` is not JSON.
    """

def http_date_line(seconds: int) -> bytes:
    """``b"Date: " + email.utils.formatdate(seconds, usegmt=True).encode() + b"\\r\\n"``: a
    head's ``Date`` line for ``seconds`` since the epoch."""

def sqlite_time(created: float) -> str:
    """``datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")``: the spend
    table's ``created_at`` text for ``created`` (Unix seconds)."""

def splice_body(
    body: bytes, model_span: tuple[int, int] | None, model: bytes | None, add_usage: bool
) -> bytes | None:
    """The client's JSON object ``body`` with the upstream's ``model`` (JSON-escaped, without
    quotes; None keeps the client's) at ``model_span``, and ``stream_options.include_usage``
    first in the object when ``add_usage``; None when that cannot be spliced: no span, or
    (usage asked for) a ``stream_options`` or any ``\\u`` escape in the body."""

def sse_usage_at(data: bytes, start: int = 0) -> tuple[int, int] | None:
    """``(start, end)`` of the first ``"usage"\\s*:\\s*{`` in ``data`` at or after ``start``
    (``re.search`` of that pattern, by a vectorised search), or ``None``."""

def sse_complete(
    data: bytes, crlf: bool | None, done: bool
) -> tuple[int, bool, bool, tuple[int, int] | None] | None:
    """``(end, crlf, done, usage)`` of the SSE events complete in ``data``, or ``None`` while no
    event has ended: ``end`` is where the last one ends (after its blank line), ``crlf``
    whether events end in CRLF CRLF (given, once known; before, a CR anywhere in ``data``
    means so), ``done`` the given ``done`` or a ``data: [DONE]`` line among them, ``usage``
    ``sse_usage_at`` of them."""

def chunk_frame(data: bytes) -> bytes:
    """``data`` as one chunk of a chunked body: ``b"%x\\r\\n%b\\r\\n" % (len(data), data)``."""

def sse_done_marker(data: bytes) -> bool:
    """Whether a line of ``data`` is ``data: [DONE]`` (spaces after the colon and a trailing
    ``\\r`` allowed; ``[DONE]`` inside a ``data: {...}`` line does not count)."""

def usage_counts(body: bytes) -> tuple[int | None, int | None]:
    """``(prompt_tokens, completion_tokens)`` from an answer's top-level ``usage`` object,
    skip-scanned rather than parsed; a count is ``None`` when missing or not an integer."""

def encoding_for_model(model: str) -> str:
    """The encoding OpenAI uses for ``model``; unknown models get ``o200k_base``."""

def set_prompt_memo_capacity(capacity: int) -> int:
    """Bound the memo of long prompt texts' token counts to ``capacity`` texts (0: off).

    What the memo holds is forgotten. Returns the previous bound.
    """

def prompt_memo_len() -> int:
    """How many prompt texts' token counts the memo holds now."""

@final
class RequestFacts:
    """What the request path needs from a body (see ``sidegate.inspection``)."""

    def __new__(
        cls,
        model: str,
        stream: bool,
        include_usage: bool,
        max_tokens: int | None,
        n: int,
        temperature: float | None,
        prompt_tokens: int,
        body_hash: str | None,
        model_span: tuple[int, int] | None = None,
    ) -> RequestFacts: ...
    @property
    def model(self) -> str: ...
    @property
    def stream(self) -> bool: ...
    @property
    def include_usage(self) -> bool: ...
    @property
    def max_tokens(self) -> int | None:
        """``max_completion_tokens``, else ``max_tokens``; None when neither is set."""
    @property
    def n(self) -> int: ...
    @property
    def temperature(self) -> float | None: ...
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def reservation(self) -> int:
        """The tokens a limit holds until the answer is counted:
        ``prompt_tokens + (max_tokens or 0) * max(1, n)``."""
    @property
    def body_hash(self) -> str | None:
        """Hex xxh3-128 of the body's canonical form (the cache key's body part); None when
        ``inspect`` was asked not to work it out (``hash_body=False``)."""
    @property
    def model_span(self) -> tuple[int, int] | None:
        """``body[start:end]`` is the model name, between its quotes, when the body names the
        model once and without escapes; None otherwise."""

def inspect(
    body: bytes,
    endpoint: str,
    encoding: str | None = None,
    count_tokens: bool = True,
    hash_body: bool = True,
) -> RequestFacts:
    """Parse, validate, count and hash a request body in one call.

    ``endpoint`` is ``chat``, ``completions`` or ``embeddings``; ``encoding`` defaults to the
    model's. ``hash_body=False`` skips the body hash (``body_hash`` is then None), which only
    a response cache reads. Raises ``InvalidBodyError`` for a body the proxy cannot serve and
    ``NativeError`` for an unknown endpoint or encoding.
    """

HOP_BY_HOP: tuple[str, ...]
"""RFC 9110 hop-by-hop header names, lower-case: never passed on."""
CLIENT_ONLY: tuple[str, ...]
"""Request header names, lower-case, an upstream never gets from the client (credentials,
framing, negotiation)."""
UPSTREAM_ONLY: tuple[str, ...]
"""Answer header names, lower-case, a client never gets from the upstream (framing, cookies,
what the gateway writes itself)."""

@final
class AccessLines:
    """The access log's lines not yet written: each request's JSON line is appended natively
    and ``take`` hands them all over for one write."""

    def __new__(cls, write_at: int) -> AccessLines: ...
    def add(
        self,
        created: float,
        warning: bool,
        request_id: str,
        trace_id: str | None,
        span_id: str | None,
        tenant: str,
        key_id: str | None,
        model: str,
        upstream: str,
        status: int,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float,
        latency_ms: float,
        cache: str,
        attempts: int,
    ) -> bool:
        """Append the access log's JSON line (newline included) for one request logged at
        ``created`` (Unix seconds): the line ``JsonFormatter`` writes for these fields,
        ``cost_usd`` rounded to 8 decimals and ``latency_ms`` to 3, at level ``warning`` or
        ``info``. True when the caller must act: it is the first line since the last
        ``take``, or ``write_at`` bytes are pending."""
    def take(self) -> bytes:
        """The pending lines, end to end; none are pending afterwards."""
    def __len__(self) -> int: ...

@final
class MetricValue:
    """A Prometheus sample's value (prometheus-client's ``ValueClass``): a float updated
    without a lock; the constructor takes and ignores the ``ValueClass`` arguments."""

    def __new__(cls, *_args: object, **_kwargs: object) -> MetricValue: ...
    def inc(self, amount: float) -> None: ...
    def set(self, value: float, timestamp: float | None = None) -> None: ...
    def get(self) -> float: ...
    def set_exemplar(self, exemplar: object) -> None: ...
    def get_exemplar(self) -> object | None: ...

@final
class BucketObserver:
    """A histogram child's ``observe``: adds to ``total`` and to the first bucket whose bound
    is at least the amount (``bounds`` end with +Inf, one per bucket)."""

    def __new__(
        cls, total: MetricValue, buckets: list[MetricValue], bounds: list[float]
    ) -> BucketObserver: ...
    def __call__(self, amount: float) -> None: ...

@final
class SqliteSpendWriter:
    """The spend log's SQLite writer: a thread of its own that never takes the GIL. Rows are
    queued by ``record`` and written in one transaction when ``batch_size`` are queued or
    ``flush_interval`` seconds pass; refused rows wait in order (at most ``max_pending``, then
    the oldest go) and are tried again after 0.5 s, doubling to 30 s."""

    def __new__(
        cls,
        path: str,
        *,
        batch_size: int,
        flush_interval: float,
        max_pending: int,
        checkpoint_rows: int,
        busy_timeout: float,
    ) -> SqliteSpendWriter: ...
    def record(
        self,
        created_at: float,
        request_id: str,
        tenant: str,
        key_id: str | None,
        model: str,
        served_model: str,
        upstream: str,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float,
        latency_ms: float,
        status: int,
        cache: str,
        trace_id: str | None,
        /,
    ) -> None:
        """Queue one row, values in the table's column order (no I/O); ``latency_ms`` is
        rounded to the microsecond."""
    @property
    def pending(self) -> int: ...
    @property
    def written(self) -> int: ...
    @property
    def checkpoints(self) -> int: ...
    def take_events(self) -> list[tuple[str, str, int, float]]:
        """``(kind, error, count, retry_in_s)`` to log since the last call: ``write_failed``
        (count: rows pending), ``rows_dropped`` (count: rows), ``checkpoint_failed``."""
    def flush(self, timeout: float) -> bool:
        """Write what is queued now, waiting at most ``timeout`` seconds (blocks); True when
        the queue was emptied."""
    def close(self, timeout: float) -> int:
        """Stop once what is left is written (at most ``timeout`` seconds); the rows lost."""

@final
class HeadHeaders:
    """A message's headers as a read-only, case-insensitive multidict over the head's bytes
    (values decoded as latin-1 when read); the part of ``CIMultiDictProxy`` the gateway uses."""

    def get(self, name: str, default: str | None = None) -> str | None: ...
    def getone(self, name: str, default: str | None = None) -> str: ...
    def getall(self, name: str, default: list[str] | None = None) -> list[str]: ...
    def __getitem__(self, name: str, /) -> str: ...
    def __contains__(self, name: object, /) -> bool: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[str]: ...
    def keys(self) -> list[str]: ...
    def values(self) -> list[str]: ...
    def items(self) -> list[tuple[str, str]]: ...
    def forwarded(self) -> bytes:
        """``name: value\r\n`` for each header an upstream gets, in the client's order:
        all but ``HOP_BY_HOP``, ``CLIENT_ONLY`` and those a ``Connection`` header names;
        values byte for byte."""
    def request(self, start: bytes, own: bytes, body: bytes, with_body: bool = True) -> bytes:
        """The request an upstream gets with these as its client's headers: ``start`` (the
        request line and ``Host``), the ``forwarded()`` lines, ``own`` (the gateway's lines;
        both checked for line breaks by the caller), ``Content-Length`` for ``body``, and
        ``body`` unless ``with_body`` is false."""
    def returned(self, written: bytes | None = None) -> dict[str, str]:
        """The answer headers a client gets, in the upstream's order: all but ``HOP_BY_HOP``,
        ``UPSTREAM_ONLY``, those a ``Connection`` header names and those named in
        ``written`` (``name: value\\r\\n`` lines the gateway writes itself), plus the
        upstream's first non-empty ``x-request-id`` as ``x-upstream-request-id``."""
    def returned_block(self, written: bytes) -> bytes:
        """The header block a client gets for this answer: ``returned(written)``'s headers as
        ``name: value\r\n`` lines, values byte for byte, then ``written`` as it is."""
    def event_stream_head(
        self,
        status_line: bytes,
        request_id: str,
        cache: str,
        overhead_seconds: float,
        lines: bytes,
        tail: bytes,
    ) -> bytes | None:
        """The whole head of the event stream relaying this answer, or None when its first
        ``Content-Type`` is no ``text/event-stream``: ``status_line``, ``returned_block`` of
        ``Cache-Control: no-cache``, ``x-request-id``, ``x-cache``, ``x-sidegate-overhead-ms``
        (``overhead_seconds`` in ms, 3 decimals, zero when negative) and ``lines``, then
        ``tail`` (the date, the framing and the blank line)."""

def request_head(data: bytes, head_limit: int) -> tuple[bytes, bool, HeadHeaders, int, int] | None:
    """``(target, keep_alive, headers, head_len, content_length)`` for a whole plain POST over
    HTTP/1.1 at the start of ``data``, or None when llhttp should
    read the bytes instead: a partial request, chunked framing, ``Expect``, an upgrade, HTTP/1.0,
    a repeated ``Content-Length``, bare LF line ends, or a head over ``head_limit`` bytes."""

def response_head(data: bytes, head_limit: int) -> tuple[int, bool, HeadHeaders, int, bool] | None:
    """``(status, keep_alive, headers, head_len, chunked)`` when ``data`` is exactly one whole
    HTTP/1.1 answer framed by ``Content-Length`` (its body is ``data[head_len:]``), or starts
    with the whole head of one framed by a lone ``Transfer-Encoding: chunked`` (``chunked``
    true; its body, for a ``ChunkedBody``, starts at ``data[head_len:]``); headers decoded as
    latin-1. None when llhttp should read it: a partial answer or bytes after a whole one,
    close-delimited framing or both framings, a status under 200, 204 or 304, HTTP/1.0, an
    upgrade, a repeated ``Content-Length``, bare LF or lone CR, or a head over ``head_limit``
    bytes."""

@final
class ChunkedBody:
    """A chunked body read as its bytes come, however the reads cut its framing, as strictly
    as llhttp reads it (CRLF line ends, sizes of at most 15 significant hex digits, nothing
    after a size but well-formed extensions; extensions and trailer fields, each at most
    4 KiB, are dropped)."""

    def __init__(self) -> None: ...
    def reset(self) -> None:
        """Read a new body from its start, as a new ``ChunkedBody`` would."""

    def feed(self, data: bytes) -> tuple[bytes, int]:
        """``(payload, used)``: the payload of the chunks in ``data`` and the bytes of it the
        body took (fewer than all only when the body ended within them). Broken framing is
        not raised: what came before it is in ``payload``, and ``error`` says what broke."""

    @property
    def error(self) -> str | None:
        """What broke the framing, once it broke (every later call reads nothing more)."""

    @property
    def done(self) -> bool:
        """The last chunk and the trailer section are read."""
