"""What an answer's reported usage may change: the request's token counts and its cost."""

from __future__ import annotations

import pytest

from sidegate.answers import account_usage
from sidegate.auth import Tenant
from sidegate.exchange import Exchange
from sidegate.routing import Candidate
from sidegate.settings import PriceSettings

CANDIDATE = Candidate("alias", "up", "real", "o200k_base", PriceSettings(input=1.0, output=2.0))


def _exchange() -> Exchange:
    exchange = Exchange("req_1", Tenant("acme", None, None), "chat", 0.0)
    exchange.input_tokens = 7  # counted by Sidegate from the request
    return exchange


def test_reported_counts_replace_the_estimate_and_price_the_answer() -> None:
    exchange = _exchange()
    account_usage(12, 9, CANDIDATE, exchange)
    assert (exchange.input_tokens, exchange.output_tokens) == (12, 9)
    assert exchange.cost_usd == pytest.approx((12 * 1.0 + 9 * 2.0) / 1000)


@pytest.mark.parametrize("reported", [-1, 2**63, 2**64 - 1, 10**30, 1.5, "12", None, True])
def test_counts_past_reason_leave_the_requests_own(reported: object) -> None:
    exchange = _exchange()
    account_usage(reported, reported, CANDIDATE, exchange)
    assert (exchange.input_tokens, exchange.output_tokens) == (7, 0)
    assert exchange.cost_usd == pytest.approx(7 * 1.0 / 1000)
