from __future__ import annotations

import pytest

from sidegate.auth import Authenticator
from sidegate.errors import AuthenticationError
from sidegate.settings import parse_settings

CONFIG = """
upstreams: {u: {provider: mock}}
models: {m: {upstream: u}}
plans: {starter: {rpm: 5}}
tenants:
  acme: {plan: starter, keys: [sk-acme-1, sk-acme-2]}
  beta: {keys: [sk-beta]}
"""


def test_keys_map_to_tenants_and_plans() -> None:
    auth = Authenticator(parse_settings(CONFIG, {}))
    acme = auth.authenticate("Bearer sk-acme-2", None)
    assert acme.name == "acme"
    assert acme.plan is not None and acme.plan.rpm == 5
    assert auth.authenticate(None, "sk-beta").name == "beta"
    assert acme.key_id and "sk-acme" not in acme.key_id


@pytest.mark.parametrize(
    ("authorization", "code"),
    [(None, "missing_api_key"), ("Bearer nope", "invalid_api_key"), ("Basic x", "missing_api_key")],
)
def test_unknown_or_missing_keys_are_refused(authorization: str | None, code: str) -> None:
    auth = Authenticator(parse_settings(CONFIG, {}))
    with pytest.raises(AuthenticationError) as caught:
        auth.authenticate(authorization, None)
    assert caught.value.instance_code == code


def test_no_auth_mode_admits_everyone_as_anonymous() -> None:
    settings = parse_settings(CONFIG + "auth: {mode: none}\n", {})
    assert Authenticator(settings).authenticate(None, None).name == "anonymous"


def test_a_key_answers_the_same_on_every_request_and_a_near_miss_never_passes() -> None:
    """A matched key is remembered; a key differing from it by one character, a prefix or a
    longer string is refused every time, before and after."""
    auth = Authenticator(parse_settings(CONFIG, {}))
    first = auth.authenticate("Bearer sk-acme-1", None)
    for _ in range(3):
        assert auth.authenticate("Bearer sk-acme-1", None) is first
        assert auth.authenticate(None, "sk-acme-1") is first
        for near in ("sk-acme-3", "sk-acme-", "sk-acme-11", "SK-ACME-1"):
            with pytest.raises(AuthenticationError):
                auth.authenticate(f"Bearer {near}", None)


def test_a_requests_headers_find_its_key_however_it_is_sent() -> None:
    """`authenticate_headers` (the lean server's path) answers as `authenticate` does, for a
    key it has seen before in the same spelling or not, and for one it has never seen."""
    auth = Authenticator(parse_settings(CONFIG, {}))
    for _ in range(2):  # the first time found by its digest, then remembered
        assert auth.authenticate_headers({"Authorization": "Bearer sk-acme-1"}).name == "acme"
        assert auth.authenticate_headers({"Authorization": "bearer  sk-acme-1 "}).name == "acme"
        assert auth.authenticate_headers({"api-key": "sk-beta"}).name == "beta"
        # The Authorization header is the one that counts when both come.
        both = {"Authorization": "Bearer sk-beta", "api-key": "sk-acme-2"}
        assert auth.authenticate_headers(both).name == "beta"
        for refused in ({"Authorization": "Bearer sk-acme-1x"}, {}, {"api-key": "sk-acme"}):
            with pytest.raises(AuthenticationError):
                auth.authenticate_headers(refused)
    anyone = Authenticator(parse_settings(CONFIG + "auth: {mode: none}\n", {}))
    assert anyone.authenticate_headers({"Authorization": "Bearer sk-acme-1"}).name == "anonymous"
