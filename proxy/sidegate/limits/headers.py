"""OpenAI's rate-limit headers, and the 429 errors that carry them.

Every admitted response carries `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` for the
tightest requests limit and the tightest tokens limit that applied (tenant or tenant x model).
Durations use OpenAI's spelling: `12ms`, `1.5s`, `6m0s`, `1h2m3s`. Refusals keep OpenAI's error
`type` (`requests` or `tokens`) with `code: rate_limit_exceeded`, plus `Retry-After` (whole
seconds, rounded up) and `retry-after-ms`.
"""

from __future__ import annotations

from sidegate.errors import RateLimitError
from sidegate.limits.model import Bucket, Level, LimitKind


class RequestsLimitError(RateLimitError):
    type = "requests"


class TokensLimitError(RateLimitError):
    type = "tokens"


def duration(ms: int) -> str:
    if ms < 1000:
        return f"{max(0, ms)}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    text = f"{hours}h" if hours else ""
    if hours or minutes:
        text += f"{minutes}m"
    return text + f"{rest / 1000:g}s"


def retry_headers(retry_ms: int) -> dict[str, str]:
    retry_ms = max(1, retry_ms)
    return {"Retry-After": str(-(-retry_ms // 1000)), "retry-after-ms": str(retry_ms)}


def admitted_headers(buckets: tuple[Bucket, ...], levels: tuple[Level, ...]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for kind in ("requests", "tokens"):
        tightest: tuple[Bucket, Level] | None = None
        for bucket, level in zip(buckets, levels, strict=True):
            if bucket.kind != kind:
                continue
            if tightest is None or level.remaining < tightest[1].remaining:
                tightest = (bucket, level)
        if tightest is not None:
            bucket, level = tightest
            headers[f"x-ratelimit-limit-{kind}"] = str(int(bucket.per_minute))
            headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, int(level.remaining)))
            headers[f"x-ratelimit-reset-{kind}"] = duration(level.reset_ms)
    return headers


def refused_headers(kind: LimitKind, per_minute: float, retry_ms: int) -> dict[str, str]:
    return {
        f"x-ratelimit-limit-{kind}": str(int(per_minute)),
        f"x-ratelimit-remaining-{kind}": "0",
        f"x-ratelimit-reset-{kind}": duration(retry_ms),
        **retry_headers(retry_ms),
    }
