"""Model name -> ordered candidates: the model itself, then its fallbacks (each once)."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from sidegate.errors import ModelNotFoundError
from sidegate.settings import ModelSettings, PriceSettings, Settings
from sidegate.tokens import encoding_for_model


@dataclass(frozen=True, slots=True)
class Candidate:
    model: str  # the name clients use
    upstream: str
    upstream_model: str
    encoding: str
    price: PriceSettings
    # `upstream_model` as a JSON string spells it, without the quotes: what a body that names
    # another model gets spliced in (worked out once, not per request).
    upstream_model_json: bytes = field(init=False, repr=False, compare=False)
    # `encoding` is the one `model`'s name implies: inspection, which counts a prompt in that
    # one, counted it in this one already.
    encoding_by_name: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "upstream_model_json", orjson.dumps(self.upstream_model)[1:-1])
        object.__setattr__(
            self, "encoding_by_name", self.encoding == encoding_for_model(self.model)
        )


class Router:
    def __init__(self, settings: Settings) -> None:
        self._models = settings.models
        self._plans: dict[str, tuple[Candidate, ...]] = {
            name: tuple(self._candidate(n) for n in self._chain(name)) for name in self._models
        }

    def names(self) -> tuple[str, ...]:
        return tuple(self._models)

    def candidates(self, model: str) -> tuple[Candidate, ...]:
        found = self._plans.get(model)
        if found is None:
            raise ModelNotFoundError(
                f"The model `{model}` does not exist or you do not have access to it.",
                param="model",
            )
        return found

    def encoding(self, model: str) -> str:
        settings = self._models.get(model)
        if settings is not None and settings.encoding:
            return settings.encoding
        return encoding_for_model(model)

    def _chain(self, name: str) -> list[str]:
        order: list[str] = []
        stack = [name]
        while stack:
            current = stack.pop(0)
            if current in order:
                continue
            order.append(current)
            stack.extend(self._models[current].fallbacks)
        return order

    def _candidate(self, name: str) -> Candidate:
        model: ModelSettings = self._models[name]
        return Candidate(
            model=name,
            upstream=model.upstream,
            upstream_model=model.upstream_model or name,
            encoding=model.encoding or encoding_for_model(model.upstream_model or name),
            price=model.price_per_1k,
        )
