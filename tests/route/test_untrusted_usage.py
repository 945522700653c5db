"""Upstreams that report usage approximately, partly, absurdly or not at all (Ollama, llama.cpp, vLLM):
real HTTP through the route, and the ledger never settles below what the rules in settle.py allow."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from route_helpers import MODEL, FakeUpstream

from scripted_model.sse import sse_events
from supervisor.route import Usage as SettleUsage
from supervisor.route.ledger import iter_records, read_entries
from supervisor.route.ledger_records import Reservation
from supervisor.route.settle import MAX_BYTES_PER_TOKEN

MAX_TOKENS = 400
TEXT = "produced text " * 40  # 560 bytes: at least 70 output tokens by the floor
REQUEST = {"model": MODEL, "max_tokens": MAX_TOKENS, "messages": [{"role": "user", "content": "x"}]}


@pytest.fixture
def upstreams():
    started: list[FakeUpstream] = []

    def start(**kwargs: Any) -> FakeUpstream:
        started.append(FakeUpstream(**kwargs))
        return started[-1]

    yield start
    for upstream in started:
        upstream.close()


def message_bytes(usage: Any, *, text: str = TEXT, drop_usage: bool = False) -> bytes:
    message: dict[str, Any] = {
        "id": "msg_compat",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }
    if drop_usage:
        del message["usage"]
    return json.dumps(message).encode()


def reservations(path) -> list[Reservation]:
    return [record for _, record in iter_records(path) if isinstance(record, Reservation)]


def post(harness, body: dict[str, Any] | None = None):
    with harness.raw() as client:
        return client.post("/v1/messages", json=body or REQUEST, headers={"x-api-key": harness.credential})


def settled_once(harness) -> tuple[SettleUsage, SettleUsage, Decimal, Decimal, str | None]:
    """(recorded usage, reserved worst case, recorded USD, reserved USD, ledger note) of the one call made."""
    entries, torn = read_entries(harness.ledger_path)
    (held,) = reservations(harness.ledger_path)
    assert not torn and len(entries) == 1 and entries[0].reservation == held.id
    assert harness.route.ledger.totals.open == {}
    return entries[0].usage, held.usage, entries[0].cost_usd, held.cost_usd, entries[0].note


MISSING = [
    pytest.param(None, id="usage-null"),
    pytest.param("lots", id="usage-string"),
    pytest.param([1, 2], id="usage-array"),
    pytest.param(7, id="usage-number"),
]


@pytest.mark.parametrize("usage", MISSING)
def test_no_usage_object_settles_at_the_reserved_worst_case(make_route, upstreams, usage):
    harness = make_route(upstreams(body=message_bytes(usage)).url)
    assert post(harness).status_code == 200
    recorded, worst, usd, reserved_usd, note = settled_once(harness)
    assert recorded == worst and worst.output_tokens == MAX_TOKENS and worst.input_tokens > 0
    assert usd == reserved_usd > 0
    assert note == "no usage reported"
    assert "upstream_error" in harness.kinds()


def test_a_message_without_a_usage_field_settles_at_the_worst_case(make_route, upstreams):
    harness = make_route(upstreams(body=message_bytes(None, drop_usage=True)).url)
    assert post(harness).status_code == 200
    recorded, worst, usd, reserved_usd, _ = settled_once(harness)
    assert recorded == worst and usd == reserved_usd


def test_a_200_body_that_is_not_json_settles_at_the_worst_case(make_route, upstreams):
    harness = make_route(upstreams(body=b"<html>proxy error</html>").url)
    assert post(harness).status_code == 200
    recorded, worst, _, _, _ = settled_once(harness)
    assert recorded == worst


def test_an_integer_too_long_for_python_to_parse_settles_at_the_worst_case(make_route, upstreams):
    body = message_bytes({"input_tokens": 5, "output_tokens": 5}).replace(
        b'"output_tokens": 5', b'"output_tokens": ' + b"9" * 5000
    )
    harness = make_route(upstreams(body=body).url)
    assert post(harness).status_code == 200
    recorded, worst, _, _, _ = settled_once(harness)
    assert recorded == worst


BAD_COUNTS = [
    pytest.param(-5, id="negative"),
    pytest.param(12.5, id="float"),
    pytest.param(12.0, id="integral-float"),
    pytest.param("100", id="string"),
    pytest.param(True, id="bool"),
    pytest.param(None, id="null"),
    pytest.param({"n": 1}, id="object"),
    pytest.param(10**30, id="absurd"),
    pytest.param(100_000_001, id="just-past-credible"),
]


@pytest.mark.parametrize("bad", BAD_COUNTS)
def test_a_bad_input_count_charges_the_input_side_at_its_bound(make_route, upstreams, bad):
    harness = make_route(upstreams(body=message_bytes({"input_tokens": bad, "output_tokens": 90})).url)
    assert post(harness).status_code == 200
    recorded, worst, usd, reserved_usd, note = settled_once(harness)
    assert recorded.input_tokens == worst.input_tokens and recorded.output_tokens == 90
    assert recorded.cache_creation_input_tokens == recorded.cache_read_input_tokens == 0
    assert "input_tokens" in note and "input charged at its reserved bound" in note
    # the input side is priced at the dearest input rate, as it was reserved: never cheaper than reported
    assert usd <= reserved_usd and usd == worst.input_tokens * Decimal("1.25") / 10**6 + 90 * Decimal(5) / 10**6


@pytest.mark.parametrize("bad", BAD_COUNTS)
def test_a_bad_output_count_charges_max_tokens(make_route, upstreams, bad):
    harness = make_route(upstreams(body=message_bytes({"input_tokens": 30, "output_tokens": bad})).url)
    assert post(harness).status_code == 200
    recorded, worst, _, _, note = settled_once(harness)
    assert recorded == SettleUsage(input_tokens=30, output_tokens=MAX_TOKENS)
    assert "output charged at max_tokens" in note


@pytest.mark.parametrize("bad", BAD_COUNTS)
def test_a_bad_cache_count_charges_the_input_side_at_its_bound(make_route, upstreams, bad):
    usage = {"input_tokens": 3, "output_tokens": 90, "cache_read_input_tokens": bad}
    harness = make_route(upstreams(body=message_bytes(usage)).url)
    assert post(harness).status_code == 200
    recorded, worst, _, _, _ = settled_once(harness)
    assert recorded == SettleUsage(input_tokens=worst.input_tokens, output_tokens=90)


def test_empty_usage_charges_both_sides_at_the_worst_case(make_route, upstreams):
    harness = make_route(upstreams(body=message_bytes({})).url)
    assert post(harness).status_code == 200
    recorded, worst, usd, reserved_usd, note = settled_once(harness)
    assert recorded == worst and usd == reserved_usd
    assert "input_tokens missing" in note and "output_tokens missing" in note


def test_counts_without_cache_fields_are_taken_as_reported(make_route, upstreams):
    # what Ollama, llama.cpp and vLLM send: two counts, no cache fields
    harness = make_route(upstreams(body=message_bytes({"input_tokens": 31, "output_tokens": 90})).url)
    assert post(harness).status_code == 200
    recorded, _, usd, _, note = settled_once(harness)
    assert recorded == SettleUsage(input_tokens=31, output_tokens=90) and note is None
    assert usd == (31 * Decimal(1) + 90 * Decimal(5)) / 10**6
    assert "upstream_error" not in harness.kinds()


@pytest.mark.parametrize("reported", [0, 1, 69])
def test_output_below_what_was_produced_is_raised_to_the_produced_bytes(make_route, upstreams, reported):
    harness = make_route(upstreams(body=message_bytes({"input_tokens": 31, "output_tokens": reported})).url)
    assert post(harness).status_code == 200
    recorded, _, _, _, note = settled_once(harness)
    floor = len(TEXT) // MAX_BYTES_PER_TOKEN
    assert floor == 70 and recorded.output_tokens == floor and "below the 560 bytes produced" in note


def test_the_produced_floor_never_passes_max_tokens(make_route, upstreams):
    text = "x" * (MAX_TOKENS * MAX_BYTES_PER_TOKEN * 3)  # more than max_tokens could ever produce
    harness = make_route(upstreams(body=message_bytes({"input_tokens": 31, "output_tokens": 0}, text=text)).url)
    assert post(harness).status_code == 200
    recorded, worst, _, _, _ = settled_once(harness)
    assert recorded.output_tokens == MAX_TOKENS == worst.output_tokens
    assert "reservation_exceeded" not in harness.kinds()


def test_tool_input_and_thinking_count_as_produced(make_route, upstreams):
    message = json.loads(message_bytes({"input_tokens": 1, "output_tokens": 0}, text=""))
    message["content"] = [
        {"type": "thinking", "thinking": "t" * 160, "signature": "s" * 4000},
        {"type": "tool_use", "id": "toolu_1", "name": "run", "input": {"cmd": "c" * 300}},
    ]
    harness = make_route(upstreams(body=json.dumps(message).encode()).url)
    assert post(harness).status_code == 200
    recorded, _, _, _, _ = settled_once(harness)
    assert recorded.output_tokens == (160 + len(json.dumps({"cmd": "c" * 300}, separators=(",", ":")))) // 8


def test_a_credible_count_above_the_worst_case_is_recorded_as_reported(make_route, upstreams):
    harness = make_route(upstreams(body=message_bytes({"input_tokens": 50_000_000, "output_tokens": 90})).url)
    assert post(harness).status_code == 200
    recorded, _, _, _, _ = settled_once(harness)
    assert recorded.input_tokens == 50_000_000
    assert "reservation_exceeded" in harness.kinds()


# -- streams --------------------------------------------------------------------------------------


def stream_events(usage: Any, *, final: Any = "same", text: str = TEXT) -> list[bytes]:
    """An SSE answer whose message_start carries `usage` and whose message_delta carries `final`."""
    message = {
        "id": "msg_s",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 0, "output_tokens": 0},
        "content": [{"type": "text", "text": text}],
    }
    events = []
    for event in sse_events(message):
        name, _, data = event.partition(b"\ndata: ")
        payload = json.loads(data)
        if payload["type"] == "message_start":
            payload["message"]["usage"] = usage
            if usage == "drop":
                del payload["message"]["usage"]
        elif payload["type"] == "message_delta":
            payload["usage"] = usage if final == "same" else final
            if payload["usage"] == "drop":
                del payload["usage"]
        events.append(name + b"\ndata: " + json.dumps(payload).encode() + b"\n\n")
    return events


def stream(harness) -> None:
    with harness.raw() as client:
        answer = client.post(
            "/v1/messages", json={**REQUEST, "stream": True}, headers={"x-api-key": harness.credential}
        )
    assert answer.status_code == 200 and b"message_stop" in answer.content


def test_a_stream_without_any_usage_settles_at_the_worst_case(make_route, upstreams):
    harness = make_route(upstreams(stream=stream_events("drop")).url)
    stream(harness)
    recorded, worst, usd, reserved_usd, note = settled_once(harness)
    assert recorded == worst and usd == reserved_usd and note == "no usage reported"


def test_a_stream_whose_final_delta_has_no_output_count_charges_max_tokens(make_route, upstreams):
    # message_start's output count is a placeholder (1): with no final count, the output is unknown
    events = stream_events({"input_tokens": 12, "output_tokens": 1}, final="drop")
    harness = make_route(upstreams(stream=events).url)
    stream(harness)
    recorded, _, _, _, _ = settled_once(harness)
    assert recorded == SettleUsage(input_tokens=12, output_tokens=MAX_TOKENS)


@pytest.mark.parametrize("bad", [-1, "9", 1.5, 10**20])
def test_a_stream_with_a_bad_final_count_charges_max_tokens(make_route, upstreams, bad):
    events = stream_events({"input_tokens": 12, "output_tokens": 1}, final={"output_tokens": bad})
    harness = make_route(upstreams(stream=events).url)
    stream(harness)
    recorded, _, _, _, _ = settled_once(harness)
    assert recorded == SettleUsage(input_tokens=12, output_tokens=MAX_TOKENS)


def test_a_stream_under_reporting_its_output_is_raised_to_what_streamed(make_route, upstreams):
    events = stream_events({"input_tokens": 12, "output_tokens": 1}, final={"output_tokens": 3})
    harness = make_route(upstreams(stream=events).url)
    stream(harness)
    recorded, _, _, _, _ = settled_once(harness)
    assert recorded == SettleUsage(input_tokens=12, output_tokens=len(TEXT) // MAX_BYTES_PER_TOKEN)


# -- caps -----------------------------------------------------------------------------------------


def test_caps_hold_when_no_usage_is_ever_reported(make_route, upstreams):
    """Each answer without usage costs its worst case, so the cap refuses before spend could pass it."""
    upstream = upstreams(body=message_bytes(None, drop_usage=True))
    harness = make_route(upstream.url, {"caps": {"per_cycle": {"tokens": 10_000}, "per_day": {}, "total": {}}})
    statuses = [post(harness).status_code for _ in range(6)]
    worst = reservations(harness.ledger_path)[0].usage.total_tokens
    served = statuses.count(200)
    assert statuses == [200] * served + [402] * (6 - served) and served == 10_000 // worst
    assert harness.route.ledger.totals.total.tokens == served * worst <= 10_000
