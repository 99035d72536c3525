"""Who is calling: API keys (held hashed, matched in constant time) or JWTs, mapped to tenants.

`authenticate` is the synchronous path for `keys` and `none`; `authenticate_request` is what the
middleware awaits, and adds `jwt` (`sidegate.jwt_auth`), whose key set may need fetching.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from sidegate.errors import AuthenticationError
from sidegate.settings import PlanSettings, Settings

if TYPE_CHECKING:
    # PyJWT and cryptography load only when `auth.mode: jwt` needs them.
    from sidegate.jwt_auth import JwtVerifier
    from sidegate.upstream.headers import ClientHeaders

ANONYMOUS: Final = "anonymous"


@dataclass(frozen=True, slots=True)
class Tenant:
    name: str
    plan: PlanSettings | None
    key_id: str | None  # a short, non-reversible id of the key used (for logs and spend)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class Authenticator:
    """Maps the bearer token of a request to a `Tenant`.

    Keys are kept as SHA-256 digests. A lookup hashes the presented key, so the table is
    probed with a digest the caller cannot steer, and the final comparison is
    `hmac.compare_digest`: timing reveals nothing about how much of a key matched.

    A key that matched is remembered as presented (they are the configured keys, already in
    this process's settings), so its next requests skip the hash: with OpenSSL 3 a SHA-256
    object costs more than the rest of authentication. A remembered key is found by a probe
    keyed with the interpreter's randomised string hash, so timing still says nothing of how
    close another string came; keys that failed are not remembered.
    """

    def __init__(self, settings: Settings) -> None:
        self._mode = settings.auth_mode
        self._by_digest: dict[bytes, tuple[bytes, Tenant]] = {}
        for name, tenant in settings.tenants.items():
            plan = settings.plans.get(tenant.plan) if tenant.plan else None
            for key in tenant.keys:
                digest = _digest(key)
                self._by_digest[digest] = (digest, Tenant(name, plan, digest[:6].hex()))
        self._anonymous = Tenant(ANONYMOUS, None, None)
        self._matched: dict[str, Tenant] = {}
        # The same, by the whole `Authorization` value when it was `Bearer KEY` as written:
        # what a client sends on every request, found without taking the header apart.
        self._matched_headers: dict[str, Tenant] = {}
        self._plans = {
            name: settings.plans.get(t.plan) if t.plan else None
            for name, t in settings.tenants.items()
        }
        self._jwt: JwtVerifier | None = None
        if self._mode == "jwt":
            from sidegate.jwt_auth import JwtVerifier

            self._jwt = JwtVerifier(settings.auth, settings.plans)
        # `authenticate` alone decides (no JWT keys to fetch): no coroutine is needed.
        self.verifies_locally = self._jwt is None

    @property
    def required(self) -> bool:
        return self._mode != "none"

    async def authenticate_request(
        self, authorization: str | None, api_key_header: str | None
    ) -> Tenant:
        if self._jwt is None:
            return self.authenticate(authorization, api_key_header)
        token = _bearer(authorization)
        if not token:
            raise AuthenticationError(
                "You didn't provide a token. Pass it as 'Authorization: Bearer TOKEN'.",
                code="missing_api_key",
            )
        name, plan, key_id, has_plan = await self._jwt.verify(token)
        return Tenant(name, plan if has_plan else self._plans.get(name), key_id)

    def authenticate_headers(self, headers: ClientHeaders) -> Tenant:
        """`authenticate` with a request's `Authorization` and `api-key` headers."""
        authorization = headers.get("Authorization")
        if authorization is not None:
            matched = self._matched_headers.get(authorization)
            if matched is not None:
                return matched
        return self.authenticate(authorization, headers.get("api-key"))

    def authenticate(self, authorization: str | None, api_key_header: str | None) -> Tenant:
        if self._mode == "none":
            return self._anonymous
        presented = _bearer(authorization) or api_key_header
        if not presented:
            raise AuthenticationError(
                "You didn't provide an API key. Pass it as 'Authorization: Bearer KEY'.",
                code="missing_api_key",
            )
        matched = self._matched.get(presented)
        if matched is not None:
            return matched
        digest = _digest(presented)
        stored, tenant = self._by_digest.get(digest, (b"", self._anonymous))
        if not hmac.compare_digest(stored, digest):
            raise AuthenticationError("Incorrect API key provided.")
        self._matched[presented] = tenant  # bounded: only configured keys match
        if authorization == f"Bearer {presented}":  # one spelling per key: bounded too
            self._matched_headers[authorization] = tenant
        return tenant


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None
