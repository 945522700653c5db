"""store/journal_writer.journal_note: the one way the supervisor writes a note into the agent's journal."""

from __future__ import annotations

import os
from pathlib import Path

from supervisor.store.decision_kinds import DecisionKind
from supervisor.store.decision_log import DecisionLog
from supervisor.store.journal_writer import JournalWriter, journal_note


def test_a_note_lands_in_the_journal_and_logs_nothing(tmp_path: Path) -> None:
    journal, log = JournalWriter(tmp_path / "journal"), DecisionLog(tmp_path / "decisions.jsonl")
    assert journal_note(journal, log, "rollback", "main rolled back")
    (notes,) = (tmp_path / "journal").rglob("notes.md")
    assert notes.read_text().rstrip().endswith("main rolled back") and " rollback\n" in notes.read_text()
    assert not (tmp_path / "decisions.jsonl").exists()


def test_a_sabotaged_journal_is_logged_and_never_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("host\n")
    journal, log = JournalWriter(tmp_path / "journal"), DecisionLog(tmp_path / "decisions.jsonl", throttle_s=3600)
    day = journal.write("setup", "x").parent
    (day / "notes.md").unlink()
    os.symlink(victim, day / "notes.md")
    assert not journal_note(journal, log, "gate-rejected", "verdict", candidate="1-2")
    assert not journal_note(journal, log, "supervisor-gave-up", "again")  # throttled: a kind the agent repeats
    assert victim.read_text() == "host\n"
    (record,) = [record for record in log.records() if record.kind == DecisionKind.JOURNAL_REFUSED]
    assert record.candidate == "1-2" and record.details == {"kind": "gate-rejected"}
    assert record.reasons and "notes.md" in record.reasons[0]
