"""JWT bearer tokens (`auth.mode: jwt`): RS256/ES256 signatures checked against a JWKS URL.

The key set is fetched on first use and cached by `kid`. A token naming a `kid` we do not hold
triggers one refresh (keys rotate) — at most once per `MIN_REFRESH_SECONDS`, and concurrent
requests share it, so a flood of tokens with made-up `kid`s cannot make us hammer the issuer.
Only asymmetric algorithms are accepted and the algorithm must match the key's type, which rules
out `none` and the HS256-with-a-public-key confusion. `exp` is required; `iss` and `aud` must
equal `auth.issuer` / `auth.audience` when configured. The tenant is the `auth.tenant_claim`
claim; the plan is the `auth.plan_claim` claim when configured and present, else the tenant's
plan in `tenants`.

Fetching uses a short-lived client session: a refresh happens a few times a day, and holding a
connection pool open for it between refreshes would cost more than it saves.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from typing import Any, Final

import aiohttp
import jwt
import orjson

from sidegate.errors import AuthenticationError
from sidegate.settings import AuthSettings, PlanSettings

ALGORITHMS: Final = ("RS256", "ES256")
_KEY_TYPES: Final = {"RS256": "RSA", "ES256": "EC"}
MIN_REFRESH_SECONDS: Final = 10.0
FETCH_TIMEOUT_SECONDS: Final = 5.0
LEEWAY_SECONDS: Final = 10
_REASONS: Final = (
    (jwt.ExpiredSignatureError, "expired"),
    (jwt.InvalidAudienceError, "wrong audience"),
    (jwt.InvalidIssuerError, "wrong issuer"),
    (jwt.InvalidSignatureError, "bad signature"),
    (jwt.MissingRequiredClaimError, "a required claim is missing"),
)


class JwtVerifier:
    def __init__(
        self,
        settings: AuthSettings,
        plans: dict[str, PlanSettings],
        *,
        min_refresh_seconds: float = MIN_REFRESH_SECONDS,
    ) -> None:
        self._min_refresh = min_refresh_seconds
        self._url = settings.jwks_url or ""
        self._issuer = settings.issuer
        self._audience = settings.audience
        self._tenant_claim = settings.tenant_claim
        self._plan_claim = settings.plan_claim
        self._plans = plans
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = -math.inf
        self._lock = asyncio.Lock()

    async def verify(self, token: str) -> tuple[str, PlanSettings | None, str | None, bool]:
        """(tenant, plan from the claim, key id for logs, whether a plan claim was present)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthenticationError("Invalid token: malformed.", code="invalid_token") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALGORITHMS:
            raise AuthenticationError("Invalid token: algorithm not allowed.", code="invalid_token")
        key = await self._key(kid if isinstance(kid, str) else "")
        if key.key_type != _KEY_TYPES[alg]:
            raise AuthenticationError("Invalid token: wrong key type.", code="invalid_token")
        claims = self._decode(token, key, alg)
        tenant = claims.get(self._tenant_claim)
        if not isinstance(tenant, str) or not tenant:
            raise AuthenticationError(
                f"Invalid token: no {self._tenant_claim!r} claim.", code="invalid_token"
            )
        plan: PlanSettings | None = None
        has_plan = False
        if self._plan_claim is not None and self._plan_claim in claims:
            has_plan = True
            name = claims[self._plan_claim]
            found = self._plans.get(name) if isinstance(name, str) else None
            if found is None:
                raise AuthenticationError("Invalid token: unknown plan.", code="invalid_token")
            plan = found
        subject = claims.get("sub")
        key_id = hashlib.sha256(str(subject).encode()).hexdigest()[:12] if subject else None
        return tenant, plan, key_id, has_plan

    def _decode(self, token: str, key: jwt.PyJWK, alg: str) -> dict[str, Any]:
        required = ["exp"] + (["iss"] if self._issuer else []) + (["aud"] if self._audience else [])
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": required, "verify_aud": self._audience is not None},
            )
        except jwt.PyJWTError as exc:
            reason = next((r for t, r in _REASONS if isinstance(exc, t)), "invalid")
            raise AuthenticationError(f"Invalid token: {reason}.", code="invalid_token") from None
        return claims

    async def _key(self, kid: str) -> jwt.PyJWK:
        key = self._keys.get(kid)
        if key is not None:
            return key
        async with self._lock:
            key = self._keys.get(kid)
            if key is None and time.monotonic() - self._fetched_at >= self._min_refresh:
                await self._refresh()
                key = self._keys.get(kid)
        if key is None:
            raise AuthenticationError("Invalid token: unknown signing key.", code="invalid_token")
        return key

    async def _refresh(self) -> None:
        self._fetched_at = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_SECONDS)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(self._url) as response,
            ):
                response.raise_for_status()
                payload = orjson.loads(await response.read())
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError):
            return  # keep the keys we have; the next unknown kid retries after the pause
        keys: dict[str, jwt.PyJWK] = {}
        for entry in payload.get("keys", []) if isinstance(payload, dict) else []:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                keys[str(entry.get("kid", ""))] = jwt.PyJWK(entry)
            except jwt.PyJWTError:
                continue
        if keys:
            self._keys = keys
