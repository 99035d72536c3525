"""Every error Sidegate answers with, as one hierarchy.

    ProxyError                      status  type
    ├── InvalidRequestError           400   invalid_request_error
    │   └── BodyTooLargeError         413   invalid_request_error
    ├── AuthenticationError           401   authentication_error
    ├── PermissionDeniedError         403   permission_error
    ├── NotFoundError                 404   invalid_request_error
    │   └── ModelNotFoundError        404   invalid_request_error  (code model_not_found)
    ├── RateLimitError                429   rate_limit_error       (code rate_limit_exceeded)
    │   └── QuotaExceededError        429   insufficient_quota     (code insufficient_quota)
    ├── InternalError                 500   api_error
    ├── UnavailableError              503   api_error              (draining, no capacity)
    └── UpstreamError                 502   api_error
        ├── UpstreamConnectError      502   (refused, DNS, TLS handshake)
        ├── UpstreamResetError        502   (connection lost; `after_first_byte` tells when)
        ├── UpstreamProtocolError     502   (malformed HTTP)
        ├── UpstreamStatusError       upstream's own 5xx status
        └── UpstreamTimeoutError      504   (connect / first byte / idle / deadline)

Each class declares `status`, `type`, `code` and a log `level`; `test_errors` checks they all do.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar


class ProxyError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "api_error"
    code: ClassVar[str | None] = None
    level: ClassVar[int] = logging.ERROR
    # True once the request's access line names this error (its code), so the error renderer
    # does not log the request a second time.
    accounted: bool = False

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.instance_code = code if code is not None else self.code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.instance_code,
            }
        }


class InvalidRequestError(ProxyError):
    status = 400
    type = "invalid_request_error"
    level = logging.INFO


class BodyTooLargeError(InvalidRequestError):
    status = 413
    code = "request_too_large"

    def __init__(
        self, message: str = "The request body is larger than this server accepts."
    ) -> None:
        super().__init__(message)


class AuthenticationError(ProxyError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"
    level = logging.INFO


class PermissionDeniedError(ProxyError):
    status = 403
    type = "permission_error"
    code = "permission_denied"
    level = logging.INFO


class NotFoundError(ProxyError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"
    level = logging.INFO


class ModelNotFoundError(NotFoundError):
    code = "model_not_found"


class RateLimitError(ProxyError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"
    level = logging.INFO
    # Which limit refused (requests, tokens, concurrency, budget), as llm_rate_limited_total
    # labels it; set where the limits decide.
    limit: str | None = None


class QuotaExceededError(RateLimitError):
    type = "insufficient_quota"
    code = "insufficient_quota"


class InternalError(ProxyError):
    status = 500
    type = "api_error"
    code = "internal_error"
    level = logging.ERROR


class UnavailableError(ProxyError):
    status = 503
    type = "api_error"
    code = "service_unavailable"
    level = logging.WARNING


class UpstreamError(ProxyError):
    """The upstream could not give an answer. `retryable` says whether another endpoint may."""

    status = 502
    type = "api_error"
    code = "upstream_error"
    level = logging.WARNING
    retryable: ClassVar[bool] = True


class UpstreamConnectError(UpstreamError):
    code = "upstream_connect_error"


class UpstreamResetError(UpstreamError):
    code = "upstream_connection_reset"

    def __init__(self, message: str, *, after_first_byte: bool = False, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.after_first_byte = after_first_byte


class UpstreamProtocolError(UpstreamError):
    code = "upstream_protocol_error"


class UpstreamStatusError(UpstreamError):
    """The upstream answered 5xx. The status and body are passed on if no retry succeeds."""

    code = "upstream_error"

    def __init__(
        self, message: str, *, upstream_status: int, upstream_body: bytes = b"", **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.upstream_status = upstream_status
        self.upstream_body = upstream_body


class UpstreamTimeoutError(UpstreamError):
    status = 504
    code = "upstream_timeout"


def status_of(error: ProxyError) -> int:
    if isinstance(error, UpstreamStatusError):
        return error.upstream_status
    return error.status
