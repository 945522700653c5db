"""Hard caps: refused before forwarding, clearly, without SDK retries; warnings once; kept over restarts."""

from __future__ import annotations

import anthropic
import pytest
from route_helpers import MODEL, scenario, stop

HUNDRED = {"input_tokens": 60, "output_tokens": 40, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}


def ask(client, cycle: str | None = None):
    headers = {"x-ouroboros-cycle": cycle} if cycle else None
    return client.messages.create(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "go"}], extra_headers=headers)


def day_cap(tokens: int | None = None, usd: str | None = None) -> dict:
    return {"caps": {"per_cycle": {}, "per_day": {"tokens": tokens, "usd": usd}, "total": {}}}


def test_spending_past_the_daily_cap_is_refused_at_the_cap(scripted, make_route):
    upstream = scripted(scenario(HUNDRED, repeat=True))
    harness = make_route(upstream.url, day_cap(tokens=350))
    client = harness.sdk(max_retries=2)  # the SDK's retries must not turn a refusal into a storm
    for _ in range(4):  # 0, 100, 200, 300 spent before each: all under 350
        ask(client)
    with pytest.raises(anthropic.PaymentRequiredError, match="budget cap reached: UTC day .*400 of 350 tokens") as refused:
        ask(client)

    assert refused.value.status_code == 402
    assert refused.value.body["error"]["type"] == "billing_error"
    assert refused.value.response.headers["x-should-retry"] == "false"
    assert int(refused.value.response.headers["retry-after"]) <= 86400
    assert upstream.steps_served == 4  # refused before forwarding
    assert harness.kinds().count("budget_refused") == 1  # one SDK call, no retries
    assert harness.route.ledger.totals.total.tokens == 400


def test_warnings_at_80_and_90_percent_once_each(scripted, make_route):
    upstream = scripted(scenario(HUNDRED, repeat=True))
    harness = make_route(upstream.url, day_cap(tokens=1000))
    client = harness.sdk()
    for _ in range(10):
        ask(client)
    warnings = [e for e in harness.events if e.kind == "budget_warning"]
    assert [w.details["threshold"] for w in warnings] == [0.8, 0.9]
    assert [w.details["spent"] for w in warnings] == ["800", "900"]
    assert all(w.details["scope"] == "day" and w.run_id == "run-test" for w in warnings)


def test_a_restart_keeps_the_spend_and_the_refusal(scripted, make_route):
    upstream = scripted(scenario(HUNDRED, repeat=True))
    first = make_route(upstream.url, day_cap(tokens=200))
    ask(first.sdk())
    ask(first.sdk())
    stop(first)

    second = make_route(upstream.url, day_cap(tokens=200))
    with pytest.raises(anthropic.PaymentRequiredError, match="budget cap reached"):
        ask(second.sdk())
    assert upstream.steps_served == 2
    assert "budget_warning" not in second.kinds()  # warned before the restart already


def test_money_cap_in_total(scripted, make_route):
    big = {"input_tokens": 0, "output_tokens": 100_000, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    upstream = scripted(scenario(big, repeat=True))  # $0.50 each at $5 per million output tokens
    harness = make_route(upstream.url, {"caps": {"per_cycle": {}, "per_day": {}, "total": {"usd": "1.00"}}})
    ask(harness.sdk())
    ask(harness.sdk())
    with pytest.raises(anthropic.PaymentRequiredError, match=r"total: 1\.0+ of 1\.00 USD"):
        ask(harness.sdk())


def test_cycle_cap_applies_per_cycle_header(scripted, make_route):
    upstream = scripted(scenario(HUNDRED, repeat=True))
    harness = make_route(upstream.url, {"caps": {"per_cycle": {"tokens": 100}, "per_day": {}, "total": {}}})
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
    harness = make_route(upstream.url, day_cap(tokens=100))
    ask(harness.sdk())
    with pytest.raises(anthropic.PaymentRequiredError, match="budget cap reached"):
        with harness.sdk().messages.stream(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "go"}]) as events:
            events.get_final_message()
    assert upstream.steps_served == 1
