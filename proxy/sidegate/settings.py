"""One typed, frozen `Settings`, loaded once and validated before the port opens.

Two stages: YAML is read and `${VAR}` / `${VAR:-default}` references in string values are filled
from the environment (the only place Sidegate reads it); the result is validated by strict
pydantic models (unknown keys are errors) and cross-checked (models name real upstreams, tenants
name real plans). Every problem is reported as `ConfigError` naming the offending key.

A filled-in value is always a string: `keys: ["${ACME_KEY}"]` stays the key whatever it looks
like (`12345`, `yes`, `[abc`), and a number or boolean field takes `port: "${PORT:-8080}"`
because pydantic converts "8080" or "true" where the field's type asks for it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """The configuration is invalid; the message names the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=256)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    # How long in-flight requests (long streams included) may run after SIGTERM.
    drain_timeout_seconds: float = Field(default=30.0, ge=0)
    # `lean`: the OpenAI endpoints are served by a bare httptools protocol, everything else by
    # aiohttp; `aiohttp`: aiohttp serves everything.
    http: Literal["lean", "aiohttp"] = "lean"
    # An idle keep-alive client connection is closed after this long.
    keepalive_timeout_seconds: float = Field(default=75.0, gt=0)


class UpstreamSettings(_Strict):
    provider: Literal["openai", "mock"] = "openai"
    endpoints: tuple[str, ...] = ()
    api_key: str | None = None
    # Limit on waiting for the first byte and then between chunks; never a cap on a whole stream.
    timeout_seconds: float = Field(default=60.0, gt=0)
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    max_concurrent_requests: int | None = Field(default=None, ge=1)
    rate_limit_rpm: int | None = Field(default=None, ge=1)
    max_connections: int = Field(default=256, ge=1)
    # lean: Sidegate's own HTTP/1.1 client (fastest). aiohttp: the general-purpose client, for
    # what lean does not do (an egress proxy from HTTPS_PROXY).
    transport: Literal["lean", "aiohttp"] = "lean"
    ca_bundle: str | None = None  # PEM file of CAs to trust for https endpoints (default: system)

    @model_validator(mode="after")
    def _check_endpoints(self) -> UpstreamSettings:
        if self.provider != "mock" and not self.endpoints:
            raise ValueError("endpoints: at least one endpoint URL is required")
        for url in self.endpoints:
            if not re.match(r"^https?://[^/\s]+", url):
                raise ValueError(f"endpoints: {url!r} is not an http(s) URL")
        return self


class PriceSettings(_Strict):
    input: float = Field(default=0.0, ge=0)
    output: float = Field(default=0.0, ge=0)


class ModelSettings(_Strict):
    upstream: str
    upstream_model: str | None = None
    encoding: Literal["cl100k_base", "o200k_base"] | None = None
    price_per_1k: PriceSettings = PriceSettings()
    max_context: int | None = Field(default=None, ge=1)
    fallbacks: tuple[str, ...] = ()


class ModelLimitSettings(_Strict):
    """Limits of one tenant on one model, on top of the plan's limits for all models."""

    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    max_concurrent: int | None = Field(default=None, ge=1)


class PlanSettings(_Strict):
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    burst: int | None = Field(default=None, ge=1)
    max_concurrent: int | None = Field(default=None, ge=1)
    daily_budget_usd: float | None = Field(default=None, ge=0)
    models: dict[str, ModelLimitSettings] = {}


class TenantSettings(_Strict):
    plan: str | None = None
    keys: tuple[str, ...] = ()


_Section = TypeVar("_Section", bound=_Strict)


class JwtSettings(_Strict):
    jwks_url: str | None = None
    issuer: str | None = None
    audience: str | None = None
    tenant_claim: str = "tenant"
    plan_claim: str | None = None


def _fold_nested(section: _Section, name: str) -> _Section:
    """`section` with the keys of its nested `name:` mapping lifted beside the flat ones, so the
    two spellings (`auth: {jwt: {jwks_url: U}}` and `auth: {jwks_url: U}`) mean the same."""
    nested = getattr(section, name)
    if nested is None:
        return section
    given = nested.model_dump(exclude_unset=True)
    for key, value in given.items():
        if key in section.model_fields_set and getattr(section, key) != value:
            raise ValueError(f"{name}.{key} and {key} differ; give it once")
    return section.model_copy(update=given)


class AuthSettings(JwtSettings):
    mode: Literal["keys", "jwt", "none"] | None = None  # None: keys when any tenant has keys
    jwt: JwtSettings | None = None

    @model_validator(mode="after")
    def _fold_jwt(self) -> AuthSettings:
        return _fold_nested(self, "jwt")


class RedisSettings(_Strict):
    url: str = "redis://127.0.0.1:6379/0"
    fail_open: bool = True
    pool_size: int = Field(default=32, ge=1)
    # Bound on one Redis call; past it the request is served on local limits (fail_open).
    timeout_seconds: float = Field(default=0.25, gt=0)


class StateSettings(RedisSettings):
    backend: Literal["memory", "redis"] = "memory"
    redis: RedisSettings | None = None

    @model_validator(mode="after")
    def _fold_redis(self) -> StateSettings:
        return _fold_nested(self, "redis")


class AdminSettings(_Strict):
    token: str | None = None  # no admin routes while unset


class CacheSettings(_Strict):
    enabled: bool = True
    backend: Literal["memory", "redis"] = "memory"
    ttl_seconds: float = Field(default=3600.0, gt=0)
    max_entries: int = Field(default=10_000, ge=1)
    # Memory backend: also bounded by the stored answers' bytes (per process).
    max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    url: str | None = None  # redis backend; None: state.url
    # Widen "cacheable" from temperature 0 to every temperature (answers become frozen samples).
    cache_nondeterministic: bool = False
    # Tenants never share entries unless this names one namespace they all read and write.
    shared_namespace: str | None = Field(default=None, min_length=1)
    # Redis values at least this large are stored zlib-compressed.
    compress_min_bytes: int = Field(default=1024, ge=0)
    # Bound on one Redis call; past it the lookup is a miss and Redis rests a second (fail-open).
    timeout_seconds: float = Field(default=0.25, gt=0)


class TelemetrySettings(_Strict):
    metrics: bool = True
    otlp_endpoint: str | None = None
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Traces are exported (OTLP/HTTP, `/v1/traces` appended) only when otlp_endpoint is set.
    trace_sample_ratio: float = Field(default=1.0, ge=0, le=1)
    service_name: str = Field(default="sidegate", min_length=1)
    # Off: metrics carry tenant="-" so many tenants cannot explode the series count.
    tenant_label: bool = True
    metrics_token: str | None = Field(default=None, min_length=1)  # /metrics needs this bearer
    # Sent with every span export, e.g. {Authorization: "Basic ${LANGFUSE_OTLP_AUTH}"}.
    otlp_headers: dict[str, str] = {}

    @field_validator("otlp_endpoint")
    @classmethod
    def _check_endpoint(cls, endpoint: str | None) -> str | None:
        if endpoint is not None and not re.match(r"^https?://[^/\s]+", endpoint):
            raise ValueError(f"{endpoint!r} is not an http(s) URL")
        return endpoint


class SpendSettings(_Strict):
    enabled: bool = True
    # sqlite:///relative.db, sqlite:////absolute.db, or postgresql://user:pass@host/db
    database_url: str = "sqlite:///sidegate-spend.db"
    batch_size: int = Field(default=500, ge=1)
    flush_interval_seconds: float = Field(default=1.0, gt=0)
    # Rows kept while the database is unreachable; past it the oldest are dropped (and logged).
    max_pending: int = Field(default=100_000, ge=1)

    @field_validator("database_url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        if not re.match(r"^(sqlite:///.+|postgres(ql)?(\+\w+)?://.+)$", url):
            raise ValueError("expected sqlite:///PATH or postgresql://USER@HOST/DB")
        return url


class Settings(_Strict):
    server: ServerSettings = ServerSettings()
    upstreams: dict[str, UpstreamSettings] = {}
    models: dict[str, ModelSettings] = {}
    plans: dict[str, PlanSettings] = {}
    tenants: dict[str, TenantSettings] = {}
    auth: AuthSettings = AuthSettings()
    state: StateSettings = StateSettings()
    admin: AdminSettings = AdminSettings()
    cache: CacheSettings = CacheSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    spend: SpendSettings = SpendSettings()

    @model_validator(mode="after")
    def _cross_check(self) -> Settings:
        if not self.models:
            raise ValueError("models: at least one model is required")
        for name, model in self.models.items():
            if model.upstream not in self.upstreams:
                raise ValueError(f"models.{name}.upstream: no upstream named {model.upstream!r}")
            for fallback in model.fallbacks:
                if fallback not in self.models:
                    raise ValueError(f"models.{name}.fallbacks: no model named {fallback!r}")
        seen: dict[str, str] = {}
        for name, tenant in self.tenants.items():
            if tenant.plan is not None and tenant.plan not in self.plans:
                raise ValueError(f"tenants.{name}.plan: no plan named {tenant.plan!r}")
            for key in tenant.keys:
                if not key:
                    raise ValueError(f"tenants.{name}.keys: a key is empty")
                if key in seen:
                    where = "twice" if seen[key] == name else f"in tenants.{seen[key]}.keys too"
                    raise ValueError(f"tenants.{name}.keys: a key is given {where}")
                seen[key] = name
        if self.auth_mode == "keys" and not seen:
            raise ValueError("auth.mode: 'keys' needs at least one tenant with keys")
        if self.auth_mode == "jwt" and not self.auth.jwks_url:
            raise ValueError("auth.jwt.jwks_url: required when auth.mode is 'jwt'")
        return self

    @property
    def auth_mode(self) -> Literal["keys", "jwt", "none"]:
        if self.auth.mode is not None:
            return self.auth.mode
        return "keys" if any(t.keys for t in self.tenants.values()) else "none"

    def with_server(self, **changes: Any) -> Settings:
        """A copy with server fields overridden (command-line flags), checked as the file is."""
        given = {k: v for k, v in changes.items() if v is not None}
        try:
            server = ServerSettings.model_validate({**self.server.model_dump(), **given})
        except ValidationError as exc:
            raise ConfigError(_describe(exc, ("server",))) from None
        return self.model_copy(update={"server": server})


EMBEDDED_DEFAULT = """
upstreams:
  mock: {provider: mock}
models:
  mock-gpt: {upstream: mock, upstream_model: mock-gpt, encoding: o200k_base,
             price_per_1k: {input: 0.00015, output: 0.0006}}
auth: {mode: none}
state: {backend: memory}
spend: {enabled: false}  # a demo run leaves no file behind
"""


def load_settings(path: str | Path | None, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from the YAML file at `path`, or the embedded default when `path` is None."""
    if path is None:
        text = EMBEDDED_DEFAULT
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    return parse_settings(text, os.environ if environ is None else environ)


def parse_settings(text: str, environ: Mapping[str, str]) -> Settings:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("the top level must be a mapping of sections")
    expanded = _expand(raw, environ, ())
    try:
        return Settings.model_validate(expanded)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _expand(value: Any, environ: Mapping[str, str], where: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return _expand_string(value, environ, where)
    if isinstance(value, dict):
        return {k: _expand(v, environ, (*where, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, environ, (*where, str(i))) for i, v in enumerate(value)]
    return value


def _expand_string(text: str, environ: Mapping[str, str], where: tuple[str, ...]) -> str:
    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = environ.get(name)
        if found is not None and (found or default is None):
            return found
        if default is not None:
            return default
        raise ConfigError(f"{'.'.join(where)}: environment variable {name} is not set")

    return _ENV_REFERENCE.sub(substitute, text)


def _describe(exc: ValidationError, within: tuple[str, ...] = ()) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in (*within, *error["loc"]))
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)
