"""The ledger opens from a snapshot plus its tail; the snapshot is only trusted while it matches."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from supervisor.route import ledger as ledger_module
from supervisor.route import ledger_records
from supervisor.route.checkpoint import snapshot_path
from supervisor.route.ledger import Ledger, LedgerEntry, utc_now
from supervisor.route.pricing import Usage


def spend(n: int, cycle: str = "c", days_ago: int = 0) -> LedgerEntry:
    return LedgerEntry(
        ts=utc_now() - timedelta(days=days_ago),
        run_id="r",
        cycle=cycle,
        model="m",
        stream=False,
        status=200,
        complete=True,
        usage=Usage(input_tokens=n),
        cost_usd=Decimal(n) / 1000,
    )


def totals_of(ledger: Ledger) -> tuple:
    t = ledger.totals
    return t.total, dict(t.by_day), dict(t.by_cycle)


def test_a_snapshot_plus_tail_equals_a_full_replay(tmp_path, monkeypatch):
    monkeypatch.setattr(ledger_module, "SNAPSHOT_EVERY", 10)
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger.open(path)
    for n in range(1, 26):
        ledger.append(spend(n, cycle=f"c{n % 4}", days_ago=n % 3))
    expected = totals_of(ledger)
    ledger._handle.close()  # killed: no snapshot on close, the last one is 5 records behind
    assert snapshot_path(path).exists()
    from_snapshot = Ledger.open(path)
    assert totals_of(from_snapshot) == expected
    from_snapshot.close()
    snapshot_path(path).unlink()
    replayed = Ledger.open(path)
    assert totals_of(replayed) == expected
    replayed.close()


def test_a_snapshot_that_no_longer_matches_its_ledger_is_ignored(tmp_path, caplog):
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger.open(path)
    ledger.append(spend(5))
    ledger.close()
    path.write_text(spend(7).model_dump_json() + "\n")  # a different ledger under the same name
    reopened = Ledger.open(path)
    assert reopened.totals.total.tokens == 7
    assert "not used" in caplog.text
    reopened.close()


def test_buckets_stay_bounded_however_many_cycles_and_days(tmp_path, monkeypatch):
    monkeypatch.setattr(ledger_records, "MAX_CYCLES", 50)
    ledger = Ledger.open(tmp_path / "ledger.jsonl")
    for n in range(200):
        ledger.totals.add(spend(1, cycle=f"fresh-{n}", days_ago=n % 40))
    assert len(ledger.totals.by_cycle) == 50 and "fresh-199" in ledger.totals.by_cycle
    assert len(ledger.totals.by_day) <= 2 * ledger_records.KEEP_DAYS
    assert utc_now().date().isoformat() in ledger.totals.by_day  # today is always kept
    assert ledger.totals.total.requests == 200  # the total never forgets
    ledger.close()


def test_a_torn_line_after_the_snapshot_is_cut(tmp_path):
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger.open(path)
    ledger.append(spend(3))
    ledger.close()
    with open(path, "ab") as handle:
        handle.write(spend(4).model_dump_json().encode()[:40])
    reopened = Ledger.open(path)
    assert reopened.totals.total.tokens == 3 and path.read_bytes().endswith(b"\n")
    reopened.append(spend(2))
    reopened.close()
    assert Ledger.open(path).totals.total.tokens == 5


@pytest.mark.parametrize("kind", ["reserve", "release"])
def test_a_record_claiming_another_kind_is_corruption_not_a_misread(tmp_path, kind):
    path = tmp_path / "ledger.jsonl"
    line = spend(3).model_dump_json().replace('"kind":"spend"', f'"kind":"{kind}"')
    path.write_text(line + "\n" + spend(1).model_dump_json() + "\n")
    with pytest.raises(ledger_module.LedgerError, match="line 1 is corrupt"):
        Ledger.open(path)
