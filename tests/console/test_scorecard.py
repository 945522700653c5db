"""The scorecard store: equal to the records, incremental, crash-safe, and not fooled by the agent's files."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from decimal import Decimal

from supervisor.route.ledger import LEDGER_FILE_NAME, Ledger, read_entries
from supervisor.store.decision_kinds import DecisionKind
from supervisor.store.decision_log import DecisionLog
from supervisor.store.scorecard import ScorecardStore

from .helpers import entry, sha, write_history


def _state(tmp_path):
    state = tmp_path / "repo.git" / "ouroboros"
    state.mkdir(parents=True)
    return state


def test_cards_equal_the_records(tmp_path):
    state = _state(tmp_path)
    expected = write_history(state, 4)
    store = ScorecardStore(state)
    assert store.update() > 0
    cards = {c.generation: c for c in store.cards()}
    assert sorted(cards) == [0, 1, 2, 3, 4]
    records = list(DecisionLog(state / "decisions.jsonl").records())
    for record in (r for r in records if r.kind == "accepted"):
        card = cards[record.generation]
        assert (card.commit, card.parent, card.candidate, card.why) == (
            record.commit,
            record.main_before,
            record.candidate,
            record.details["summary"],
        )
        assert card.parent_generation == record.generation - 1 and card.gate_s == 2.5
    for number in range(4):
        assert (cards[number].made, cards[number].accepted, cards[number].rejected) == (2, 1, 1)
        assert cards[number].tokens == 1000 and cards[number].cycles == 2
    assert sum(c.tokens for c in cards.values()) == expected["tokens"]
    assert sum(c.usd for c in cards.values()) == expected["usd"]
    rejected = store.candidates(state="rejected")
    assert {r.id for r in rejected} == {f"{g}-1" for g in range(4)}
    assert rejected[0].failures[0]["test_id"] == "tests/test_x.py::test_y"


def test_update_reads_only_what_is_new_and_survives_a_reopen(tmp_path):
    state = _state(tmp_path)
    write_history(state, 2)
    store = ScorecardStore(state)
    first = store.update()
    assert store.update() == 0  # nothing new: nothing consumed, nothing counted twice
    log = DecisionLog(state / "decisions.jsonl")
    log.append("rejected", candidate="2-1", commit=sha(99, "d"), reasons=["no"], details={"summary": "late"})
    ledger = Ledger.open(state / LEDGER_FILE_NAME)
    ledger.append(entry(datetime.now(UTC), "cycle-late", 50, "0.5"))
    ledger.close()
    assert ScorecardStore(state).update() == 2  # a new process goes on from the saved offsets
    card = ScorecardStore(state).card(2)
    assert (card.made, card.rejected, card.tokens, card.usd) == (1, 1, 50, Decimal("0.5"))
    assert first == len(list(log.records())) - 1 + len(read_entries(state / LEDGER_FILE_NAME)[0]) - 1


def test_a_torn_last_line_waits_for_the_rest(tmp_path):
    state = _state(tmp_path)
    write_history(state, 1)
    store = ScorecardStore(state)
    store.update()
    line = json.dumps({"seq": 99}).encode()
    with open(state / "decisions.jsonl", "ab") as handle:
        handle.write(line[:5])
    assert store.update() == 0
    assert store.snapshot()["meta"].get("chain_ok", "1") == "1"
    with open(state / "decisions.jsonl", "ab") as handle:
        handle.write(b"\n")  # the line ends: now it is a broken record, and it is reported as one
    store.update()
    assert store.snapshot()["meta"]["chain_ok"] == "0"


def test_an_edited_log_is_reported_and_a_rewritten_one_recounted(tmp_path):
    state = _state(tmp_path)
    write_history(state, 2)
    store = ScorecardStore(state)
    store.update()
    path = state / "decisions.jsonl"
    lines = path.read_text().splitlines()
    # Rewrite the record under the saved offset: the store notices and starts over, and the chain
    # check names the edited record. (An edit further back is the full check's to find: /log.)
    lines[-1] = lines[-1].replace("proposal 1-2", "proposal 1-X")
    path.write_text("\n".join(lines) + "\n")
    store.update()
    meta = store.snapshot()["meta"]
    assert meta["chain_ok"] == "0" and f"record {len(lines)}" in meta["chain_problem"]
    assert "recounted" in meta["reset_note"]
    assert sorted(c.generation for c in store.cards()) == [0, 1, 2]


def test_waiting_approved_and_rolled_back(tmp_path):
    state = _state(tmp_path)
    write_history(state, 1)
    log = DecisionLog(state / "decisions.jsonl")
    log.append("needs-approval", candidate="1-1", commit=sha(7, "e"), details={"summary": "edits a test"})
    store = ScorecardStore(state)
    store.update()
    assert store.card(1).waiting == 1 and store.snapshot()["waiting"] == 1
    log.append("approved", candidate="1-1", commit=sha(7, "e"))
    log.append(
        "accepted",
        candidate="1-1",
        commit=sha(7, "e"),
        main_before=sha(1),
        main_after=sha(7, "e"),
        generation=2,
        details={"summary": "edits a test"},
    )
    log.append("rollback", commit=sha(1), main_before=sha(7, "e"), main_after=sha(1), generation=1)
    store.update()
    card = store.card(1)
    assert (card.waiting, card.accepted, card.made, card.rollbacks_from) == (0, 1, 1, 1)
    assert store.card(2).rolled_back and store.snapshot()["meta"]["main_gen"] == "1"
    assert store.snapshot()["counters"]["rollbacks"] == 1


def test_agent_starts_and_crashes_count_when_logged(tmp_path):
    state = _state(tmp_path)
    write_history(state, 0)
    log = DecisionLog(state / "decisions.jsonl")
    for _ in range(3):
        log.append("agent-started", generation=0, details={"run_id": "r"})
    log.append(DecisionKind.AGENT_CRASHED, generation=0, details={"exit_code": 3})
    store = ScorecardStore(state)
    store.update()
    card = store.card(0)
    assert (card.starts, card.restarts, card.crashes) == (3, 2, 1)


def test_goals_come_from_completed_times_and_hostile_files_are_not_followed(tmp_path):
    state = _state(tmp_path)
    goals = tmp_path / "goals"
    goals.mkdir()
    write_history(state, 1)
    store = ScorecardStore(state, goals)
    store.update()
    (goals / "completed.md").write_text(
        "# Completed Goals\n\n## A\n\n**Completed:** 2000-01-01T00:00:00Z\n\n## B\n\n**Completed:** not a time\n"
    )
    store.update()
    assert store.card(1).goals == 1  # B: unreadable time, credited to main now; A: before any generation
    (goals / "completed.md").unlink()
    secret = tmp_path / "secret"
    secret.write_text("**Completed:** 2030-01-01T00:00:00Z\n" * 5)
    os.symlink(secret, goals / "completed.md")
    store.update()
    os.unlink(goals / "completed.md")
    os.mkfifo(goals / "completed.md")  # opening it for reading would block a careless reader forever
    store.update()
    assert store.card(1).goals == 1


def test_the_lists_read_at_every_agent_start_are_index_ranges_not_sorts(tmp_path):
    """The history summary asks for the newest rejections at every agent start: with an index on
    state alone, SQLite fetched every rejected row and sorted them (4.6 ms at 20,000, growing);
    on (state, at) it reads the 20 it shows. Checked on an old store too (the index is replaced)."""
    import sqlite3

    from supervisor.store.scorecard import tables

    path = tmp_path / "scorecard.sqlite"
    old = sqlite3.connect(path)
    old.executescript(
        tables.SCHEMA.replace("DROP INDEX IF EXISTS candidates_state;", "").replace(
            "candidates_state_at ON candidates (state, at)", "candidates_state ON candidates (state)"
        )
    )
    old.close()
    store = ScorecardStore(tmp_path, tmp_path / "goals")
    with store.session() as db:
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "candidates_state" not in names and "candidates_state_at" in names
        for state in ("rejected", None):
            clause = " WHERE state = ?" if state else ""
            plan = db.execute(
                f"EXPLAIN QUERY PLAN SELECT id FROM candidates{clause} ORDER BY at DESC LIMIT 20",
                (state,) if state else (),
            ).fetchall()
            assert not any("TEMP B-TREE" in row[3] for row in plan), plan
