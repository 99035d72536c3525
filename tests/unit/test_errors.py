from __future__ import annotations

import logging

from sidegate import errors


def _all_subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_all_subclasses(sub))
    return found


def test_every_error_declares_status_type_code_and_level() -> None:
    for cls in [errors.ProxyError, *_all_subclasses(errors.ProxyError)]:
        assert 400 <= cls.status <= 599, cls
        assert cls.type, cls
        assert cls.level in (logging.INFO, logging.WARNING, logging.ERROR), cls


def test_body_is_openai_shaped() -> None:
    error = errors.ModelNotFoundError("no such model", param="model")
    assert error.body() == {
        "error": {
            "message": "no such model",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }
    assert errors.QuotaExceededError("spent").body()["error"]["code"] == "insufficient_quota"
