"""What telemetry needs to know about configured models: bounded label values and GenAI names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from sidegate.inspection import Endpoint
from sidegate.settings import Settings

# Label value for model names no configuration knows (404s) once `_UNKNOWN_NAMES_KEPT` of them
# have their own series: clients cannot mint series without bound.
UNKNOWN_MODEL: Final = "other"
_UNKNOWN_NAMES_KEPT: Final = 20

# gen_ai.operation.name per endpoint family (OpenTelemetry GenAI semantic conventions).
OPERATIONS: Final[dict[Endpoint, str]] = {
    "chat": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
}

# The path each endpoint family is served at.
PATHS: Final[dict[Endpoint, str]] = {
    "chat": "/v1/chat/completions",
    "completions": "/v1/completions",
    "embeddings": "/v1/embeddings",
}
KINDS: Final[dict[str, Endpoint]] = {path: kind for kind, path in PATHS.items()}


@dataclass(frozen=True, slots=True)
class Catalog:
    upstream_models: dict[str, str]  # configured model -> the upstream's model name
    model_providers: dict[str, str]  # configured model -> gen_ai.provider.name
    upstream_providers: dict[str, str]  # upstream name -> gen_ai.provider.name
    unknown_seen: set[str] = field(default_factory=set)

    @classmethod
    def from_settings(cls, settings: Settings) -> Catalog:
        upstream_providers: dict[str, str] = {
            name: u.provider for name, u in settings.upstreams.items()
        }
        return cls(
            upstream_models={n: m.upstream_model or n for n, m in settings.models.items()},
            model_providers={
                n: upstream_providers.get(m.upstream, "openai") for n, m in settings.models.items()
            },
            upstream_providers=upstream_providers,
        )

    def model_label(self, model: str) -> str:
        if model in self.upstream_models or model == "-" or model in self.unknown_seen:
            return model
        if len(self.unknown_seen) < _UNKNOWN_NAMES_KEPT and len(model) <= 64:
            self.unknown_seen.add(model)
            return model
        return UNKNOWN_MODEL

    def provider(self, upstream: str, model: str) -> str:
        found = self.upstream_providers.get(upstream) or self.model_providers.get(model)
        return found or "openai"

    def response_model(self, served_model: str) -> str:
        return self.upstream_models.get(served_model, served_model)
