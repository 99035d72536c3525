"""Which limits a plan puts on one request: buckets and slots per tenant and per tenant x model.

- `rpm`: a requests bucket refilling `rpm` a minute, holding `burst` (default: the full `rpm`,
  so a whole minute's worth may be spent at once);
- `tpm`: a tokens bucket refilling `tpm` a minute, holding `tpm`; a request reserves its prompt
  tokens plus `max_tokens` x `n` at admission (`RequestFacts.reservation`) and is trued up
  with its real usage at the end;
- `max_concurrent`: requests in flight;
- `models.<name>`: the same three again for that model alone, checked together with the plan's.
"""

from __future__ import annotations

from sidegate.limits.model import Bucket, Slot
from sidegate.settings import PlanSettings


def buckets(plan: PlanSettings, model: str, reserve: int) -> tuple[Bucket, ...]:
    found: list[Bucket] = []
    if plan.rpm:
        found.append(Bucket("rpm", "requests", float(plan.burst or plan.rpm), plan.rpm, 1.0))
    if plan.tpm:
        found.append(Bucket("tpm", "tokens", float(plan.tpm), plan.tpm, float(reserve)))
    per_model = plan.models.get(model)
    if per_model is not None:
        if per_model.rpm:
            found.append(
                Bucket(f"rpm:{model}", "requests", float(per_model.rpm), per_model.rpm, 1.0)
            )
        if per_model.tpm:
            found.append(
                Bucket(f"tpm:{model}", "tokens", float(per_model.tpm), per_model.tpm, reserve)
            )
    return tuple(found)


def slots(plan: PlanSettings, model: str) -> tuple[Slot, ...]:
    found: list[Slot] = []
    if plan.max_concurrent:
        found.append(Slot("conc", plan.max_concurrent))
    per_model = plan.models.get(model)
    if per_model is not None and per_model.max_concurrent:
        found.append(Slot(f"conc:{model}", per_model.max_concurrent))
    return tuple(found)


def limited(plan: PlanSettings | None) -> bool:
    """Whether the plan limits anything at all."""
    if plan is None:
        return False
    own = (plan.rpm, plan.tpm, plan.max_concurrent, plan.daily_budget_usd)
    return any(v is not None for v in own) or bool(plan.models)
