"""JWT tenants: keys generated here, the key set served by a real local HTTP server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sidegate.auth import Authenticator, Tenant
from sidegate.errors import AuthenticationError, UnavailableError
from sidegate.jwt_auth import JwtVerifier
from sidegate.settings import parse_settings

ISSUER = "https://issuer.example"
AUDIENCE = "sidegate"

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]


class Issuer:
    """Signing keys and the JWKS document that publishes their public halves."""

    def __init__(self) -> None:
        self.private: dict[str, Any] = {}
        self.published: list[dict[str, Any]] = []
        self.fetches = 0
        self.down = False  # the key set answers 503

    def add_rsa(self, kid: str, publish: bool = True) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private[kid] = key
        if publish:
            self.publish(kid)

    def add_ec(self, kid: str) -> None:
        self.private[kid] = ec.generate_private_key(ec.SECP256R1())
        self.publish(kid)

    def publish(self, kid: str) -> None:
        key = self.private[kid]
        if isinstance(key, rsa.RSAPrivateKey):
            jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        else:
            jwk = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        self.published.append({**jwk, "kid": kid, "use": "sig"})

    def token(self, kid: str, alg: str = "RS256", **claims: Any) -> str:
        body = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "user-1",
            "tenant": "acme",
            "exp": int(time.time()) + 300,
            **claims,
        }
        return jwt.encode(body, self.private[kid], algorithm=alg, headers={"kid": kid})

    def app(self) -> web.Application:
        async def jwks(_request: web.Request) -> web.Response:
            self.fetches += 1
            if self.down:
                return web.json_response({"error": "down"}, status=503)
            return web.json_response({"keys": self.published})

        app = web.Application()
        app.router.add_get("/jwks.json", jwks)
        return app


@pytest.fixture
async def issuer(aiohttp_server: ServerFactory) -> tuple[Issuer, str]:
    found = Issuer()
    found.add_rsa("rsa-1")
    found.add_ec("ec-1")
    server = await aiohttp_server(found.app())
    return found, str(server.make_url("/jwks.json"))


def _authenticator(jwks_url: str) -> Authenticator:
    config = f"""
    upstreams: {{mock: {{provider: mock}}}}
    models: {{mock-gpt: {{upstream: mock}}}}
    plans:
      starter: {{rpm: 60}}
      gold: {{rpm: 600}}
    tenants:
      acme: {{plan: starter}}
    auth:
      mode: jwt
      jwks_url: "{jwks_url}"
      issuer: "{ISSUER}"
      audience: "{AUDIENCE}"
      plan_claim: plan
    """
    return Authenticator(parse_settings(config, {}))


async def _reject(auth: Authenticator, token: str) -> str:
    with pytest.raises(AuthenticationError) as caught:
        await auth.authenticate_request(f"Bearer {token}", None)
    assert caught.value.status == 401
    return caught.value.message


async def test_valid_rs256_and_es256_tokens_name_the_tenant_and_plan(
    issuer: tuple[Issuer, str],
) -> None:
    keys, url = issuer
    auth = _authenticator(url)
    tenant: Tenant = await auth.authenticate_request(f"Bearer {keys.token('rsa-1')}", None)
    assert tenant.name == "acme"
    assert tenant.plan is not None and tenant.plan.rpm == 60  # the tenant's configured plan
    es = keys.token("ec-1", alg="ES256", tenant="beta", plan="gold")
    other = await auth.authenticate_request(f"Bearer {es}", None)
    assert other.name == "beta"
    assert other.plan is not None and other.plan.rpm == 600  # the plan claim
    assert keys.fetches == 1  # the key set is cached


async def test_expired_token_is_refused(issuer: tuple[Issuer, str]) -> None:
    keys, url = issuer
    token = keys.token("rsa-1", exp=int(time.time()) - 3600)
    assert "expired" in await _reject(_authenticator(url), token)


async def test_wrong_audience_is_refused(issuer: tuple[Issuer, str]) -> None:
    keys, url = issuer
    token = keys.token("rsa-1", aud="someone-else")
    assert "audience" in await _reject(_authenticator(url), token)


async def test_wrong_issuer_is_refused(issuer: tuple[Issuer, str]) -> None:
    keys, url = issuer
    assert "issuer" in await _reject(_authenticator(url), keys.token("rsa-1", iss="https://x"))


async def test_unknown_kid_refreshes_the_key_set_then_refuses(issuer: tuple[Issuer, str]) -> None:
    keys, url = issuer
    keys.add_rsa("never-published", publish=False)
    auth = _authenticator(url)
    assert "unknown signing key" in await _reject(auth, keys.token("never-published"))
    assert keys.fetches == 1
    # A flood of unknown kids does not turn into a flood of fetches.
    assert "unknown signing key" in await _reject(auth, keys.token("never-published"))
    assert keys.fetches == 1


async def test_rotated_key_is_picked_up_on_its_first_use(issuer: tuple[Issuer, str]) -> None:
    keys, url = issuer
    config = parse_settings(
        f"""
        upstreams: {{mock: {{provider: mock}}}}
        models: {{mock-gpt: {{upstream: mock}}}}
        auth: {{mode: jwt, jwks_url: "{url}", issuer: "{ISSUER}", audience: "{AUDIENCE}"}}
        """,
        {},
    )
    verifier = JwtVerifier(config.auth, {}, min_refresh_seconds=0.0)
    assert (await verifier.verify(keys.token("rsa-1")))[0] == "acme"
    keys.add_rsa("rsa-2")  # the issuer rotates
    assert (await verifier.verify(keys.token("rsa-2", tenant="beta")))[0] == "beta"
    assert keys.fetches == 2


def _verifier(url: str, **timing: float) -> JwtVerifier:
    config = parse_settings(
        f"""
        upstreams: {{mock: {{provider: mock}}}}
        models: {{mock-gpt: {{upstream: mock}}}}
        auth: {{mode: jwt, jwks_url: "{url}", issuer: "{ISSUER}", audience: "{AUDIENCE}"}}
        """,
        {},
    )
    return JwtVerifier(config.auth, {}, **timing)


async def test_a_key_set_that_cannot_be_fetched_answers_503_and_is_tried_again(
    issuer: tuple[Issuer, str], caplog: pytest.LogCaptureFixture
) -> None:
    keys, url = issuer
    keys.down = True
    verifier = _verifier(url, min_refresh_seconds=0.0)
    with pytest.raises(UnavailableError) as caught:
        await verifier.verify(keys.token("rsa-1"))
    assert caught.value.status == 503  # the token may be good: the client may try again
    assert [r for r in caplog.records if getattr(r, "event", None) == "jwks_fetch_failed"]
    keys.down = False
    assert (await verifier.verify(keys.token("rsa-1")))[0] == "acme"


async def test_a_withdrawn_key_stops_verifying_once_the_key_set_is_refetched(
    issuer: tuple[Issuer, str],
) -> None:
    keys, url = issuer
    verifier = _verifier(url, min_refresh_seconds=0.0, max_key_age_seconds=0.0)
    assert (await verifier.verify(keys.token("rsa-1")))[0] == "acme"
    keys.published = [jwk for jwk in keys.published if jwk["kid"] != "rsa-1"]
    # The cached key still answers at once; its age sends for the key set in the background.
    assert (await verifier.verify(keys.token("rsa-1")))[0] == "acme"
    for _ in range(100):
        if keys.fetches >= 2:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.01)
    with pytest.raises(AuthenticationError, match="unknown signing key"):
        await verifier.verify(keys.token("rsa-1"))


async def test_tampered_signature_is_refused(issuer: tuple[Issuer, str]) -> None:
    keys, url = issuer
    head, body, signature = keys.token("rsa-1").split(".")
    flipped = ("A" if signature[10] != "A" else "B").join((signature[:10], signature[11:]))
    assert "signature" in await _reject(_authenticator(url), f"{head}.{body}.{flipped}")


async def test_tampered_claims_are_refused(issuer: tuple[Issuer, str]) -> None:
    keys, url = issuer
    head, _, signature = keys.token("rsa-1").split(".")
    forged = jwt.utils.base64url_encode(b'{"tenant":"admin","exp":9999999999}').decode()
    await _reject(_authenticator(url), f"{head}.{forged}.{signature}")


async def test_unsigned_and_symmetric_tokens_are_refused(issuer: tuple[Issuer, str]) -> None:
    _, url = issuer
    auth = _authenticator(url)
    unsigned = jwt.encode({"tenant": "acme"}, None, algorithm="none")
    assert "algorithm" in await _reject(auth, unsigned)
    symmetric = jwt.encode({"tenant": "acme"}, "secret" * 6, algorithm="HS256")
    assert "algorithm" in await _reject(auth, symmetric)


async def test_missing_token_is_refused(issuer: tuple[Issuer, str]) -> None:
    _, url = issuer
    with pytest.raises(AuthenticationError):
        await _authenticator(url).authenticate_request(None, None)


async def test_a_jwt_tenant_gets_its_plan_through_the_gateway(
    issuer: tuple[Issuer, str], aiohttp_client: Callable[..., Awaitable[Any]]
) -> None:
    from sidegate.app import build_app
    from sidegate.mock_upstream import build_mock_app

    keys, url = issuer
    upstream = TestServer(build_mock_app())
    await upstream.start_server()
    try:
        settings = parse_settings(
            f"""
            upstreams: {{mock: {{endpoints: ["{upstream.make_url("/v1")}"]}}}}
            models: {{mock-gpt: {{upstream: mock}}}}
            plans: {{two: {{rpm: 2}}}}
            auth: {{mode: jwt, jwks_url: "{url}", issuer: "{ISSUER}", audience: "{AUDIENCE}",
                    plan_claim: plan}}
            """,
            {},
        )
        client = await aiohttp_client(build_app(settings))
        body = {"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}
        headers = {"Authorization": f"Bearer {keys.token('rsa-1', plan='two')}"}
        statuses = [
            (await client.post("/v1/chat/completions", json=body, headers=headers)).status
            for _ in range(3)
        ]
        assert statuses == [200, 200, 429]
        expired = {"Authorization": f"Bearer {keys.token('rsa-1', exp=1)}"}
        response = await client.post("/v1/chat/completions", json=body, headers=expired)
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "invalid_token"
    finally:
        await upstream.close()
