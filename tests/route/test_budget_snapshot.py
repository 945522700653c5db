"""`supervisor budget` and `status` read the ledger's snapshot plus its tail, and say the same as a
full replay would: the last cycle, the day and the total."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from supervisor.cli.budget_cmds import budget_report
from supervisor.route import Ledger, LedgerEntry, RouteConfig, Usage
from supervisor.route import ledger as ledger_module
from supervisor.route.checkpoint import snapshot_path
from supervisor.route.ledger import LEDGER_FILE_NAME, read_entries


def entry(tokens: int, cycle: str) -> LedgerEntry:
    return LedgerEntry(
        ts=datetime.now(UTC),
        run_id="r",
        cycle=cycle,
        model="m",
        stream=False,
        status=200,
        complete=True,
        usage=Usage(input_tokens=tokens),
        cost_usd=Decimal(tokens) / 1_000_000,
    )


def test_the_budget_report_from_a_snapshot_equals_a_full_replay(tmp_path, monkeypatch):
    monkeypatch.setattr(ledger_module, "SNAPSHOT_EVERY", 7)
    path = tmp_path / LEDGER_FILE_NAME
    ledger = Ledger.open(path)
    for number in range(40):
        ledger.append(entry(number + 1, cycle=f"cycle-{number // 3}"))
    ledger.append(entry(5, cycle="cycle-1"))  # an old cycle charged last is the latest cycle
    ledger.close()
    assert snapshot_path(path).exists()
    report = budget_report(tmp_path, RouteConfig(), None)
    entries, torn = read_entries(path)
    assert not torn and report["torn_tail"] is False
    assert report["spend"]["total"]["tokens"] == sum(e.usage.total_tokens for e in entries) == 825
    assert report["spend"]["day"]["tokens"] == 825
    last = report["spend"]["last_cycle"]
    assert last["id"] == "cycle-1" and last["tokens"] == 4 + 5 + 6 + 5
