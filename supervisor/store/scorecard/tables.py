"""The scorecard's SQLite tables and the few statements that touch them (no logic about records)."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS generations (
  n INTEGER PRIMARY KEY, commit_sha TEXT NOT NULL, parent TEXT, parent_gen INTEGER, candidate TEXT,
  accepted_at REAL, why TEXT NOT NULL DEFAULT '', gate_s REAL, acceptance TEXT, alive_s REAL NOT NULL DEFAULT 0,
  cycles INTEGER NOT NULL DEFAULT 0, goals INTEGER NOT NULL DEFAULT 0, tokens INTEGER NOT NULL DEFAULT 0,
  usd TEXT NOT NULL DEFAULT '0', requests INTEGER NOT NULL DEFAULT 0, made INTEGER NOT NULL DEFAULT 0,
  accepted INTEGER NOT NULL DEFAULT 0, rejected INTEGER NOT NULL DEFAULT 0, waiting INTEGER NOT NULL DEFAULT 0,
  starts INTEGER NOT NULL DEFAULT 0, crashes INTEGER NOT NULL DEFAULT 0, rollbacks_from INTEGER NOT NULL DEFAULT 0,
  rolled_back INTEGER NOT NULL DEFAULT 0, probation_passed INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS generations_commit ON generations (commit_sha);
CREATE TABLE IF NOT EXISTS candidates (
  id TEXT PRIMARY KEY, gen INTEGER NOT NULL, state TEXT NOT NULL, at REAL NOT NULL, commit_sha TEXT,
  summary TEXT NOT NULL DEFAULT '', reasons TEXT NOT NULL DEFAULT '[]', failures TEXT NOT NULL DEFAULT '[]',
  gate_s REAL, generation INTEGER);
CREATE INDEX IF NOT EXISTS candidates_gen ON candidates (gen);
DROP INDEX IF EXISTS candidates_state;
CREATE INDEX IF NOT EXISTS candidates_state_at ON candidates (state, at);
CREATE INDEX IF NOT EXISTS candidates_at ON candidates (at);
CREATE TABLE IF NOT EXISTS timeline (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, gen INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS timeline_at ON timeline (at);
CREATE TABLE IF NOT EXISTS days (day TEXT PRIMARY KEY, tokens INTEGER NOT NULL DEFAULT 0, usd TEXT NOT NULL DEFAULT '0',
  requests INTEGER NOT NULL DEFAULT 0, gates INTEGER NOT NULL DEFAULT 0, passes INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS cycles (gen INTEGER NOT NULL, cycle TEXT NOT NULL, tokens INTEGER NOT NULL DEFAULT 0,
  usd TEXT NOT NULL DEFAULT '0', requests INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (gen, cycle));
CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# Columns added after the first release: a store made before them gains them (ALTER TABLE), then
# recounts from the start (their records were read before they existed: see store.py COUNT_RULE).
ADDED_COLUMNS = (
    "tasks_attempted",
    "tasks_passed",
    "tasks_failed",
    "tasks_infrastructure",
    "task_regressions",
    "task_tokens",
)
TABLES = ("meta", "generations", "candidates", "timeline", "days", "cycles", "counters")
CARD_COLUMNS = (
    "n AS generation, commit_sha AS [commit], parent, parent_gen AS parent_generation, candidate, "
    "accepted_at, why, gate_s, acceptance, alive_s, cycles, goals, tokens, usd, requests, made, "
    "accepted, rejected, waiting, starts, crashes, rollbacks_from, rolled_back, probation_passed, "
    + ", ".join(ADDED_COLUMNS)
)
NO_CYCLE = "-"


def add_columns(db: sqlite3.Connection) -> None:
    """Give a `generations` table made before ADDED_COLUMNS existed those columns (zero)."""
    present = {row[1] for row in db.execute("PRAGMA table_info(generations)")}
    for column in ADDED_COLUMNS:
        if column not in present:
            db.execute(f"ALTER TABLE generations ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")


def meta(db: sqlite3.Connection, key: str, default: str) -> str:
    row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    return row[0] if row else default


def set_meta(db: sqlite3.Connection, **values: str) -> None:
    db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(values.items()))


def reset(db: sqlite3.Connection, why: str) -> None:
    for table in TABLES:
        db.execute(f"DELETE FROM {table}")
    set_meta(db, reset_note=why)


def bump(db: sqlite3.Connection, key: str, amount: Decimal | int = 1) -> None:
    row = db.execute("SELECT value FROM counters WHERE key=?", (key,)).fetchone()
    value = Decimal(row[0]) + amount if row else Decimal(amount)
    db.execute("INSERT OR REPLACE INTO counters (key, value) VALUES (?, ?)", (key, str(value)))


def next_generation(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT MAX(n) FROM generations").fetchone()
    return 0 if row[0] is None else row[0] + 1


def generation_of(db: sqlite3.Connection, commit: str | None) -> int | None:
    row = db.execute("SELECT MAX(n) FROM generations WHERE commit_sha=?", (commit,)).fetchone()
    return None if row[0] is None else int(row[0])


def main_generation(db: sqlite3.Connection) -> int | None:
    value = meta(db, "main_gen", "")
    return int(value) if value else None


def move_main(db: sqlite3.Connection, number: int, at: float) -> None:
    """Record that `number` became main at `at` (what spend and goals are credited to)."""
    db.execute("INSERT INTO timeline (at, gen) VALUES (?, ?)", (at, number))
    set_meta(db, main_gen=str(number), main_since=repr(at))


# Time alive is time the agent ran: from an `agent-started` record to the record of that run's end.
# The run in progress (started, no end yet) is kept in meta: its generation, its start, and its last
# sign of life (the newest request it made through the route, from the ledger; decision records are
# no sign: an operator's command writes them while no agent runs).
_RUN_KEYS = ("run_gen", "run_since", "run_seen")


def open_run(db: sqlite3.Connection, gen: int | None, at: float) -> None:
    """An agent run of `gen` started at `at`; one still open ends at its last sign of life (the
    supervisor starts one agent at a time, so it ended, but when is known only that far)."""
    close_run(db, None)
    if gen is not None:
        set_meta(db, run_gen=str(gen), run_since=repr(at), run_seen=repr(at))


def saw_run(db: sqlite3.Connection, at: float) -> None:
    """A sign of life at `at` (a request metered) while a run is open."""
    if meta(db, "run_gen", "") and at > float(meta(db, "run_seen", "0")):
        set_meta(db, run_seen=repr(at))


def close_run(db: sqlite3.Connection, at: float | None) -> None:
    """The open run ended at `at` (its end record), or at its last sign of life if None."""
    gen = meta(db, "run_gen", "")
    if not gen:
        return
    since, seen = float(meta(db, "run_since", "0")), float(meta(db, "run_seen", "0"))
    end = max(seen, at) if at is not None else seen
    db.execute("UPDATE generations SET alive_s=alive_s+? WHERE n=?", (max(0.0, end - since), int(gen)))
    db.execute(f"DELETE FROM meta WHERE key IN ({','.join('?' * len(_RUN_KEYS))})", _RUN_KEYS)


def open_run_alive(db: sqlite3.Connection, live_since: float | None) -> tuple[int | None, float]:
    """The open run's generation and its time alive so far: up to now if the supervisor running now
    started it (`live_since`: when that supervisor started; None if none runs), else up to its last
    sign of life (a supervisor killed, or stopped by a version that did not record the stop)."""
    gen = meta(db, "run_gen", "")
    if not gen:
        return None, 0.0
    since, seen = float(meta(db, "run_since", "0")), float(meta(db, "run_seen", "0"))
    end = time.time() if live_since is not None and since >= live_since else seen
    return int(gen), max(0.0, end - since)


def generation_at(db: sqlite3.Connection, ts: float) -> int | None:
    row = db.execute("SELECT gen FROM timeline WHERE at <= ? ORDER BY at DESC, id DESC LIMIT 1", (ts,)).fetchone()
    return row[0] if row else None


def day_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).date().isoformat()


def day_gate(db: sqlite3.Connection, at: float, passed: bool) -> None:
    db.execute("INSERT OR IGNORE INTO days (day) VALUES (?)", (day_of(at),))
    db.execute("UPDATE days SET gates=gates+1, passes=passes+? WHERE day=?", (int(passed), day_of(at)))


def observe_gate(db: sqlite3.Connection, seconds: float, buckets: tuple[float, ...]) -> None:
    for bound in buckets:
        if seconds <= bound:
            bump(db, f"gate_bucket|{bound:g}")
    bump(db, "gate_bucket|+Inf")
    bump(db, "gate_sum", Decimal(str(seconds)))


def _add(db: sqlite3.Connection, table: str, where: str, key: tuple[Any, ...], tokens: int, usd: Decimal) -> None:
    row = db.execute(f"SELECT usd FROM {table} WHERE {where}", key).fetchone()
    total = str(Decimal(row[0]) + usd) if row else str(usd)
    db.execute(f"UPDATE {table} SET tokens=tokens+?, usd=?, requests=requests+1 WHERE {where}", (tokens, total, *key))


def add_spend(db: sqlite3.Connection, entry: Any, gen: int | None, usage_fields: tuple[str, ...]) -> None:
    """One ledger entry: into its day, its generation, its (generation, cycle), and the counters."""
    tokens, usd, day = entry.usage.total_tokens, entry.cost_usd, day_of(entry.ts.timestamp())
    db.execute("INSERT OR IGNORE INTO days (day) VALUES (?)", (day,))
    _add(db, "days", "day=?", (day,), tokens, usd)
    if gen is not None:
        _add(db, "generations", "n=?", (gen,), tokens, usd)
        if entry.cycle != NO_CYCLE:
            inserted = db.execute("INSERT OR IGNORE INTO cycles (gen, cycle) VALUES (?, ?)", (gen, entry.cycle))
            if inserted.rowcount:
                db.execute("UPDATE generations SET cycles=cycles+1 WHERE n=?", (gen,))
    db.execute("INSERT OR IGNORE INTO cycles (gen, cycle) VALUES (-1, ?)", (entry.cycle,))
    _add(db, "cycles", "gen=-1 AND cycle=?", (entry.cycle,), tokens, usd)
    set_meta(db, last_cycle=entry.cycle)
    bump(db, f"requests|{entry.status}")
    bump(db, f"usd|{entry.model}", usd)
    for kind in usage_fields:
        bump(db, f"tokens|{kind}|{entry.model}", getattr(entry.usage, kind))


def cards(
    db: sqlite3.Connection, cls: type[BaseModel], limit: int | None, before: int | None, live_since: float | None
) -> list[Any]:
    query = f"SELECT {CARD_COLUMNS} FROM generations"
    args: list[Any] = []
    if before is not None:
        query, args = query + " WHERE n < ?", [before]
    query += " ORDER BY n DESC" + (" LIMIT ?" if limit is not None else "")
    rows = db.execute(query, args + ([limit] if limit is not None else [])).fetchall()
    running, alive = open_run_alive(db, live_since)
    found = []
    for row in rows:
        data = dict(row)
        if data["generation"] == running:
            data["alive_s"] += alive
        found.append(cls.model_validate(data))
    return found


def candidate_rows(
    db: sqlite3.Connection,
    cls: type[BaseModel],
    limit: int,
    before: float | None,
    state: str | None,
    candidate_id: str | None = None,
    min_gen: int | None = None,
) -> list[Any]:
    clauses, args = [], []
    if min_gen is not None:
        clauses.append("state != 'accepted'")
    for clause, value in (("at < ?", before), ("state = ?", state), ("id = ?", candidate_id), ("gen >= ?", min_gen)):
        if value is not None:
            clauses.append(clause)
            args.append(value)
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    order = "gen DESC, at DESC" if min_gen is not None else "at DESC"  # a range of the gen index, not a scan
    rows = db.execute(
        f"SELECT id, gen, state, at, commit_sha AS [commit], summary, reasons, failures, gate_s, "
        f"generation FROM candidates{where} ORDER BY {order} LIMIT ?",
        (*args, limit),
    ).fetchall()
    return [
        cls.model_validate(
            {**dict(row), "reasons": json.loads(row["reasons"]), "failures": json.loads(row["failures"])}
        )
        for row in rows
    ]


def snapshot(db: sqlite3.Connection) -> dict[str, Any]:
    counters = {row[0]: Decimal(row[1]) for row in db.execute("SELECT key, value FROM counters")}
    days = [dict(row) for row in db.execute("SELECT * FROM days ORDER BY day DESC LIMIT 60")]
    last_cycle = meta(db, "last_cycle", "")
    cycle = db.execute("SELECT tokens, usd, requests FROM cycles WHERE gen=-1 AND cycle=?", (last_cycle,)).fetchone()
    total = db.execute("SELECT COALESCE(SUM(tokens),0), COALESCE(SUM(requests),0) FROM days").fetchone()
    usd = sum((Decimal(row[0]) for row in db.execute("SELECT usd FROM days")), Decimal(0))
    return {
        "meta": {row[0]: row[1] for row in db.execute("SELECT key, value FROM meta")},
        "counters": counters,
        "days": list(reversed(days)),
        "total": {"tokens": total[0], "usd": usd, "requests": total[1]},
        "last_cycle": {"id": last_cycle, **dict(cycle)} if cycle else None,
        "generations": db.execute("SELECT COUNT(*) FROM generations").fetchone()[0],
        "waiting": db.execute(
            "SELECT COUNT(*) FROM candidates WHERE state IN ('needs-approval','approved')"
        ).fetchone()[0],
    }
