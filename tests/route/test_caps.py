"""Hard caps: the worst case is reserved before forwarding, so spend never passes a cap; refusals are
clear and not retried; warnings once; kept over restarts.

`input_overhead_tokens = 0` keeps the worst case of these tiny requests near their real size: it is
then the body's bytes plus max_tokens (64), about 150 tokens, against usage of 100 per request.
"""

from __future__ import annotations

from decimal import Decimal

import anthropic
import pytest
from route_helpers import MODEL, scenario, stop

HUNDRED = {"input_tokens": 60, "output_tokens": 40, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}


def ask(client, cycle: str | None = None):
    headers = {"x-ouroboros-cycle": cycle} if cycle else None
    return client.messages.create(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "go"}], extra_headers=headers
    )


TIGHT = {"models": [MODEL], "input_overhead_tokens": 0}


def day_cap(tokens: int | None = None, usd: str | None = None) -> dict:
    return {"caps": {"per_cycle": {}, "per_day": {"tokens": tokens, "usd": usd}, "total": {}}, "policy": TIGHT}


def test_spending_past_the_daily_cap_is_refused_at_the_cap(scripted, make_route):
    upstream = scripted(scenario(HUNDRED, repeat=True))
    harness = make_route(upstream.url, day_cap(tokens=360))
    client = harness.sdk(max_retries=2)  # the SDK's retries must not turn a refusal into a storm
    for _ in range(3):  # 0, 100, 200 spent before each, plus a worst case of about 150: all fit in 360
        ask(client)
    with pytest.raises(
        anthropic.PaymentRequiredError, match="budget cap: UTC day .*300 of 360 tokens.*may cost up to"
    ) as refused:
        ask(client)

    assert refused.value.status_code == 402
    assert refused.value.body["error"]["type"] == "billing_error"
    assert refused.value.response.headers["x-should-retry"] == "false"
    assert int(refused.value.response.headers["retry-after"]) <= 86400
    assert upstream.steps_served == 3  # refused before forwarding
    assert harness.kinds().count("budget_refused") == 1  # one SDK call, no retries
    assert harness.route.ledger.totals.total.tokens == 300
    assert harness.route.ledger.totals.open == {}  # every reservation settled


def test_warnings_at_80_and_90_percent_once_each(scripted, make_route):
    upstream = scripted(scenario(HUNDRED, repeat=True))
    harness = make_route(upstream.url, day_cap(tokens=1100))
    client = harness.sdk()
    for _ in range(10):
        ask(client)
    warnings = [e for e in harness.events if e.kind == "budget_warning"]
    assert [w.details["threshold"] for w in warnings] == [0.8, 0.9]
    assert [w.details["spent"] for w in warnings] == ["900", "1000"]
    assert all(w.details["scope"] == "day" and w.run_id == "run-test" for w in warnings)


def test_a_restart_keeps_the_spend_and_the_refusal(scripted, make_route):
    upstream = scripted(scenario(HUNDRED, repeat=True))
    first = make_route(upstream.url, day_cap(tokens=260))
    ask(first.sdk())
    stop(first)

    second = make_route(upstream.url, day_cap(tokens=260))  # 100 spent + a worst case of ~150 fits
    ask(second.sdk())
    with pytest.raises(anthropic.PaymentRequiredError, match="budget cap: .*200 of 260"):
        ask(second.sdk())
    assert upstream.steps_served == 2
    assert "budget_warning" not in second.kinds()  # warned before the restart already


def test_money_cap_in_total(scripted, make_route):
    big = {"input_tokens": 0, "output_tokens": 20_000, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    upstream = scripted(scenario(big, repeat=True))  # $0.10 each at $5 per million output tokens
    # worst case: about 85 input tokens at the cache-write price and 20,000 output tokens: $0.1001
    harness = make_route(
        upstream.url, {"caps": {"per_cycle": {}, "per_day": {}, "total": {"usd": "0.201"}}, "policy": TIGHT}
    )
    client = harness.sdk()

    def ask_big():
        return client.messages.create(model=MODEL, max_tokens=20_000, messages=[{"role": "user", "content": "go"}])

    ask_big()
    ask_big()
    with pytest.raises(anthropic.PaymentRequiredError, match=r"total: 0\.20+ of 0\.201 USD"):
        ask_big()
    assert harness.route.ledger.totals.total.usd == Decimal("0.2")


def test_cycle_cap_applies_per_cycle_header(scripted, make_route):
    upstream = scripted(scenario(HUNDRED, repeat=True))
    harness = make_route(
        upstream.url, {"caps": {"per_cycle": {"tokens": 200}, "per_day": {}, "total": {}}, "policy": TIGHT}
    )
    client = harness.sdk()
    ask(client, cycle="7")
    with pytest.raises(anthropic.PaymentRequiredError, match="cycle 7"):
        ask(client, cycle="7")
    ask(client, cycle="8")  # a new cycle has its own cap
    ask(client)  # no header: the shared '-' bucket
    with pytest.raises(anthropic.PaymentRequiredError, match="cycle -"):
        ask(client)


def test_a_streamed_request_past_the_cap_is_refused_before_streaming(scripted, make_route):
    upstream = scripted(scenario(HUNDRED, repeat=True))
    harness = make_route(upstream.url, day_cap(tokens=200))
    ask(harness.sdk())
    with pytest.raises(anthropic.PaymentRequiredError, match="budget cap: "):
        with harness.sdk().messages.stream(
            model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "go"}]
        ) as events:
            events.get_final_message()
    assert upstream.steps_served == 1
