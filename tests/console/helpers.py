"""Synthetic records written through the real writers (decision log, ledger) for console tests and the bench."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from supervisor.route.ledger import LEDGER_FILE_NAME, Ledger, LedgerEntry
from supervisor.route.pricing import Usage
from supervisor.store.decision_log import DecisionLog

PASSES = [{"name": "candidate", "ok": True, "reason": "", "duration_s": 2.5, "counts": {}}]


def sha(n: int, salt: str = "c") -> str:
    return f"{salt}{n:039x}"[:40]


def entry(ts: datetime, cycle: str, tokens: int = 1000, usd: str = "0.01", model: str = "m") -> LedgerEntry:
    return LedgerEntry(
        ts=ts,
        run_id="run",
        cycle=cycle,
        model=model,
        stream=False,
        status=200,
        complete=True,
        usage=Usage(input_tokens=tokens // 2, output_tokens=tokens - tokens // 2),
        cost_usd=Decimal(usd),
    )


def write_history(state: Path, generations: int) -> dict:
    """Genesis, then per generation: one rejected and one accepted proposal, a ledger entry before each."""
    log = DecisionLog(state / "decisions.jsonl")
    ledger = Ledger.open(state / LEDGER_FILE_NAME)
    log.append("genesis", commit=sha(0), main_after=sha(0), generation=0)
    expected = {"tokens": 0, "usd": Decimal(0)}
    try:
        for gen in range(generations):
            for n, (kind, tokens) in enumerate((("rejected", 300), ("accepted", 700)), start=1):
                ledger.append(entry(datetime.now(UTC), f"cycle-{gen}-{n}", tokens, "0.02"))
                expected["tokens"] += tokens
                expected["usd"] += Decimal("0.02")
                commit = sha(gen + 1) if kind == "accepted" else sha(gen * 10 + n, "d")
                details = {
                    "summary": f"proposal {gen}-{n}",
                    "passes": PASSES,
                    "failures": [{"test_id": "tests/test_x.py::test_y", "message": "boom"}]
                    if kind == "rejected"
                    else [],
                }
                log.append(
                    kind,
                    candidate=f"{gen}-{n}",
                    commit=commit,
                    main_before=sha(gen),
                    main_after=commit if kind == "accepted" else sha(gen),
                    generation=gen + 1 if kind == "accepted" else None,
                    reasons=["tests failed"] if kind == "rejected" else [],
                    details=details,
                )
    finally:
        ledger.close()
    return expected


def synthetic_instance(home: Path, generations: int) -> dict:
    """An instance directory with a real (empty) bare repository and synthetic records."""
    import subprocess

    home.mkdir(parents=True, exist_ok=True)
    (home / "ouroboros.toml").write_text("")
    subprocess.run(["git", "init", "--quiet", "--bare", str(home / "repo.git")], check=True)
    state = home / "repo.git" / "ouroboros"
    state.mkdir()
    return write_history(state, generations)
