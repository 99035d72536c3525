"""JWT bearer tokens (`auth.mode: jwt`): RS256/ES256 signatures checked against a JWKS URL.

The key set is fetched on first use and cached by `kid`. A token naming a `kid` we do not hold
triggers one refresh (keys rotate) — at most once per `MIN_REFRESH_SECONDS`, and concurrent
requests share it, so a flood of tokens with made-up `kid`s cannot make us hammer the issuer.
A key set older than `MAX_KEY_AGE_SECONDS` is refetched in the background (a key the issuer
withdrew stops verifying), and a fetch that fails is logged (`jwks_fetch_failed`), retried
after `RETRY_AFTER_FAILURE_SECONDS`, and answers a token whose key it would have brought 503:
the token may well be good.
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
import logging
import math
import time
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
import jwt
import orjson

from sidegate.errors import AuthenticationError, UnavailableError
from sidegate.settings import AuthSettings, PlanSettings

log = logging.getLogger("sidegate.auth")

ALGORITHMS: Final = ("RS256", "ES256")
_KEY_TYPES: Final = {"RS256": "RSA", "ES256": "EC"}
MIN_REFRESH_SECONDS: Final = 10.0
RETRY_AFTER_FAILURE_SECONDS: Final = 1.0
MAX_KEY_AGE_SECONDS: Final = 300.0
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
        max_key_age_seconds: float = MAX_KEY_AGE_SECONDS,
    ) -> None:
        self._min_refresh = min_refresh_seconds
        self._max_key_age = max_key_age_seconds
        self._url = settings.jwks_url or ""
        self._issuer = settings.issuer
        self._audience = settings.audience
        self._tenant_claim = settings.tenant_claim
        self._plan_claim = settings.plan_claim
        self._plans = plans
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = -math.inf  # when the keys we hold were fetched
        self._next_fetch_at = -math.inf  # no fetch before then (a pause, longer after success)
        self._failing = False  # the last fetch failed
        self._lock = asyncio.Lock()
        self._background: asyncio.Task[None] | None = None

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
            if time.monotonic() - self._fetched_at >= self._max_key_age:
                self._refresh_in_background()
            return key
        async with self._lock:
            key = self._keys.get(kid)
            if key is None and time.monotonic() >= self._next_fetch_at:
                await self._refresh()
                key = self._keys.get(kid)
        if key is not None:
            return key
        if self._failing:
            raise UnavailableError("The token's signing keys cannot be fetched; try again shortly.")
        raise AuthenticationError("Invalid token: unknown signing key.", code="invalid_token")

    def _refresh_in_background(self) -> None:
        if self._background is not None and not self._background.done():
            return
        if time.monotonic() < self._next_fetch_at:
            return
        self._background = asyncio.get_running_loop().create_task(self._refresh_locked())

    async def _refresh_locked(self) -> None:
        async with self._lock:
            if time.monotonic() >= self._next_fetch_at:
                await self._refresh()

    async def _refresh(self) -> None:
        started = time.monotonic()
        self._next_fetch_at = started + min(RETRY_AFTER_FAILURE_SECONDS, self._min_refresh)
        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_SECONDS)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(self._url) as response,
            ):
                response.raise_for_status()
                payload = orjson.loads(await response.read())
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
            # Keep the keys we have; the next token that needs one retries after the pause.
            self._failing = True
            parts = urlsplit(self._url)
            log.warning(
                "cannot fetch the JWT signing keys",
                extra={
                    "event": "jwks_fetch_failed",
                    "jwks_host": parts.hostname,
                    "error": type(exc).__name__,
                },
            )
            return
        self._failing = False
        self._fetched_at = started
        self._next_fetch_at = started + self._min_refresh
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
