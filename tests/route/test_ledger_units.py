"""Pure logic: pricing, stream usage parsing, the ledger file's durability rules, the limiters."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from scripted_model.sse import sse_events
from supervisor.base.errors import ConfigError
from supervisor.base.throttle import Throttle
from supervisor.route import Ledger, LedgerEntry, LedgerError, PricingTable, RouteConfig, Usage
from supervisor.route.ledger import read_entries
from supervisor.route.limits import TokenBucket
from supervisor.route.settle import Settlement, settle
from supervisor.route.sse import StreamUsage


def entry(tokens: int = 10, day: int = 25, cycle: str = "c") -> LedgerEntry:
    usage = Usage(input_tokens=tokens)
    return LedgerEntry(
        ts=datetime(2026, 11, day, 12, tzinfo=UTC),
        run_id="r",
        cycle=cycle,
        model="m",
        stream=False,
        status=200,
        complete=True,
        usage=usage,
        cost_usd=Decimal(tokens) / 1_000_000,
    )


def test_prices_match_exactly_else_by_longest_prefix():
    table = PricingTable.default()
    assert table.price_for("claude-opus-4-5-20251101").input == Decimal("5")
    assert table.price_for("claude-opus-4-1-20250805").input == Decimal("15")
    assert table.price_for("claude-haiku-4-5").output == Decimal("5")
    assert table.price_for("gpt-4") is None


def test_settling_takes_only_the_billed_counts():
    raw = {"input_tokens": 4, "output_tokens": 2, "server_tool_use": {"x": 1}}
    worst = Usage(input_tokens=1000, output_tokens=100)
    assert settle(raw, worst, produced_bytes=16) == Settlement(usage=Usage(input_tokens=4, output_tokens=2))
    assert settle("nonsense", worst, 0).usage == worst


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 100_000])
@pytest.mark.parametrize("crlf", [False, True])
def test_stream_usage_survives_any_chunking(chunk_size, crlf):
    usage = {"input_tokens": 11, "output_tokens": 222, "cache_creation_input_tokens": 3, "cache_read_input_tokens": 44}
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
        "content": [{"type": "text", "text": "word " * 50}],
    }
    raw = b"".join(sse_events(message))
    if crlf:
        raw = raw.replace(b"\n", b"\r\n")
    tracker = StreamUsage()
    for start in range(0, len(raw), chunk_size):
        tracker.feed(raw[start : start + chunk_size])
    assert tracker.usage_to_settle() == usage
    assert tracker.produced_bytes == len("word " * 50)
    assert tracker.stopped and tracker.message_id == "msg_1"


def test_a_cut_stream_keeps_the_usage_it_saw():
    tracker = StreamUsage()
    tracker.feed(
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","usage":{"input_tokens":9,"output_tokens":1}}}\n\n'
    )
    tracker.feed(b"event: content_block_delta\ndata: {not json}\n\n")
    assert tracker.usage_to_settle() == {"input_tokens": 9, "output_tokens": 1} and not tracker.stopped


def test_ledger_reload_skips_a_torn_last_line_and_keeps_appending(tmp_path):
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger.open(path)
    ledger.append(entry(10))
    ledger.append(entry(20, day=26, cycle="d"))
    ledger.close()
    with open(path, "ab") as handle:
        handle.write(b'{"v":1,"ts":"2026-11-2')  # a crash in the middle of a write
    reopened = Ledger.open(path)
    assert reopened.totals.total.tokens == 30
    assert reopened.totals.day("2026-11-26").tokens == 20 and reopened.totals.cycle("c").tokens == 10
    reopened.append(entry(5))
    reopened.close()
    entries, torn = read_entries(path)
    assert [e.usage.input_tokens for e in entries] == [10, 20, 5] and not torn


def test_ledger_corruption_before_the_end_is_an_error(tmp_path):
    path = tmp_path / "ledger.jsonl"
    path.write_text(entry(1).model_dump_json() + "\nGARBAGE\n" + entry(2).model_dump_json() + "\n")
    with pytest.raises(LedgerError, match="line 2 is corrupt"):
        Ledger.open(path)


def test_one_writer_per_ledger(tmp_path):
    path = tmp_path / "ledger.jsonl"
    first = Ledger.open(path)
    try:
        with pytest.raises(LedgerError, match="held by another route"):
            Ledger.open(path)
    finally:
        first.close()
    Ledger.open(path).close()


def test_token_bucket_and_throttle():
    now = [0.0]
    bucket = TokenBucket(rate=2, burst=2, clock=lambda: now[0])
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.5]
    now[0] += 0.5
    assert bucket.take() == 0.0
    throttle = Throttle(interval_s=10, clock=lambda: now[0])
    assert throttle.allow("a") and not throttle.allow("a") and throttle.allow("b")


def test_config_file_errors_say_what_to_fix(tmp_path):
    path = tmp_path / "ouroboros.toml"
    path.write_text("[route.caps.per_day]\nusd = 10\ntokns = 5\n")
    with pytest.raises(ConfigError, match="caps.per_day.tokns"):
        RouteConfig.load(path)
    path.write_text('[agent]\nmodel = "x"\n')
    assert RouteConfig.load(path) == RouteConfig()
    path.write_text(
        '[route.caps.per_day]\nusd = "2.5"\n[route.pricing.models.my-model]\ninput = 1\noutput = 2\ncache_write = 1.25\ncache_read = 0.1\n'
    )
    config = RouteConfig.load(path)
    assert config.caps.per_day.usd == Decimal("2.5")
    assert config.pricing.price_for("my-model-v2").output == Decimal(2)
    assert config.pricing.price_for("claude-haiku-4-5") is None  # a table given replaces the default one
