"""Through the real SDK: every response is metered from the API's own usage, streamed or not."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal

from route_helpers import MODEL, scenario, stop

from supervisor.route import Ledger, PricingTable, Usage
from supervisor.route.ledger import read_entries

USAGES = [
    {"input_tokens": 120, "output_tokens": 33, "cache_creation_input_tokens": 400, "cache_read_input_tokens": 0},
    {"input_tokens": 17, "output_tokens": 250, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 400},
    {"input_tokens": 5, "output_tokens": 1, "cache_creation_input_tokens": 7, "cache_read_input_tokens": 9},
    {"input_tokens": 999, "output_tokens": 4096, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
]


def ask(client, stream: bool = False, cycle: str | None = None):
    kwargs = {"model": MODEL, "max_tokens": 4096, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"x-ouroboros-cycle": cycle} if cycle else None
    if stream:
        with client.messages.stream(**kwargs, extra_headers=headers) as events:
            return events.get_final_message()
    return client.messages.create(**kwargs, extra_headers=headers)


def test_ledger_equals_the_sum_of_scripted_usage_streamed_and_not(scripted, make_route):
    upstream = scripted(scenario(*USAGES))
    harness = make_route(upstream.url)
    client = harness.sdk()
    answers = [ask(client, stream=n % 2 == 1, cycle=f"cycle-{n // 2}") for n in range(len(USAGES))]

    assert [a.usage.output_tokens for a in answers] == [u["output_tokens"] for u in USAGES]
    entries, torn = read_entries(harness.ledger_path)
    assert not torn
    assert [e.usage.model_dump() for e in entries] == USAGES
    assert [e.stream for e in entries] == [False, True, False, True]
    assert all(e.complete and e.run_id == "run-test" for e in entries)
    assert [e.cycle for e in entries] == ["cycle-0", "cycle-0", "cycle-1", "cycle-1"]

    price = PricingTable.default().price_for(MODEL)
    expected_usd = sum((price.cost(Usage(**u)) for u in USAGES), Decimal(0))
    totals = harness.route.ledger.totals
    assert totals.total.tokens == sum(sum(u.values()) for u in USAGES)
    assert totals.total.usd == expected_usd
    # priced by the table: haiku 4.5 is $1 in, $5 out, $1.25 cache write, $0.10 cache read per million
    assert entries[0].cost_usd == (Decimal(120) * 1 + Decimal(33) * 5 + Decimal(400) * Decimal("1.25")) / 1_000_000
    assert entries[1].cost_usd == (Decimal(17) * 1 + Decimal(250) * 5 + Decimal(400) * Decimal("0.1")) / 1_000_000


def test_the_real_key_reaches_upstream_and_the_run_credential_does_not(scripted, make_route, header_recorder):
    harness = make_route(header_recorder.url)
    ask(harness.sdk())
    seen = header_recorder.headers[-1]
    from route_helpers import REAL_KEY

    assert seen["x-api-key"] == REAL_KEY
    assert harness.credential not in json.dumps(seen)
    assert "authorization" not in seen


def test_spend_survives_a_route_restart(scripted, make_route):
    upstream = scripted(scenario(*USAGES))
    first = make_route(upstream.url)
    ask(first.sdk())
    ask(first.sdk(), stream=True)
    spent = dataclasses.replace(first.route.ledger.totals.total)
    stop(first)

    second = make_route(upstream.url)
    assert second.route.ledger.totals.total == spent
    ask(second.sdk())
    assert second.route.ledger.totals.total.requests == 3
    second.route.ledger.close()
    reopened = Ledger.open(second.ledger_path)
    try:
        assert reopened.totals.total.tokens == sum(sum(u.values()) for u in USAGES[:3])
    finally:
        reopened.close()


def test_works_over_the_unix_socket(scripted, make_route):
    upstream = scripted(scenario(USAGES[0], USAGES[1]))
    harness = make_route(upstream.url)
    client = harness.sdk_over_socket(max_retries=0)
    assert ask(client).usage.input_tokens == 120
    assert ask(client, stream=True).usage.output_tokens == 250
    assert harness.route.ledger.totals.total.requests == 2


def test_count_tokens_is_passed_through_and_not_metered(scripted, make_route):
    upstream = scripted(scenario(USAGES[0]))
    harness = make_route(upstream.url)
    counted = harness.sdk().messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "hello there"}])
    assert counted.input_tokens > 0
    assert harness.route.ledger.totals.total.requests == 0


def test_upstream_errors_are_relayed_and_not_metered(scripted, make_route):
    import anthropic
    import pytest

    from scripted_model import Scenario

    script = Scenario.model_validate(
        {"steps": [{"error": {"status": 400, "type": "invalid_request_error", "message": "scripted refusal"}}]}
    )
    harness = make_route(scripted(script).url)
    with pytest.raises(anthropic.BadRequestError, match="scripted refusal"):
        ask(harness.sdk())
    assert harness.route.ledger.totals.total.requests == 0


def test_the_upstream_can_be_a_unix_socket(make_route, tmp_path):
    from scripted_model import ScriptedModelServer

    socket_path = tmp_path / "scripted.sock"
    with ScriptedModelServer(scenario(USAGES[0], USAGES[1]), socket_path=socket_path) as upstream:
        harness = make_route(upstream.url, {"upstream": {"base_url": upstream.url, "uds": str(socket_path)}})
        assert ask(harness.sdk()).usage.input_tokens == 120
        assert ask(harness.sdk(), stream=True).usage.output_tokens == 250
    assert harness.route.ledger.totals.total.requests == 2
