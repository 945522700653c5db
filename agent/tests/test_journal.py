import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from agent.errors import JournalError
from agent.journal import Journal, JournalRecord
from agent.usage import Usage

HEADING = re.compile(r"^## \d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z \S+$", re.MULTILINE)


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def test_entries_are_appended_under_timestamped_headings(tmp_path):
    journal = Journal(tmp_path, FakeClock(datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)))
    journal.append("notes", "cycle", "first")
    journal.append("notes", "cycle", "second")
    text = (tmp_path / "2026/03/04/notes.md").read_text()
    assert HEADING.findall(text) == ["## 2026-03-04T05:06:07Z cycle"] * 2
    assert text.index("first") < text.index("second")
    assert [e.body for e in journal.entries()] == ["first", "second"]


def test_day_folder_is_chosen_at_write_time(tmp_path):
    clock = FakeClock(datetime(2026, 3, 4, 23, 59, 59, tzinfo=UTC))
    journal = Journal(tmp_path, clock)
    journal.append("notes", "cycle", "before midnight")
    clock.now += timedelta(seconds=2)
    journal.append("reflections", "reflection", "after midnight")
    assert (tmp_path / "2026/03/04/notes.md").exists()
    assert (tmp_path / "2026/03/05/reflections.md").exists()
    assert [e.kind for e in journal.entries()] == ["cycle", "reflection"]


def test_structured_twin_matches_the_markdown(tmp_path):
    journal = Journal(tmp_path, FakeClock(datetime(2026, 3, 4, tzinfo=UTC)))
    journal.append("notes", "cycle", "body", usage=Usage(input_tokens=5, calls=1), data={"goal": "g"})
    lines = (tmp_path / "2026/03/04/entries.jsonl").read_text().splitlines()
    record = JournalRecord.model_validate_json(lines[0])
    assert (record.kind, record.file, record.usage.input_tokens, record.data) == ("cycle", "notes", 5, {"goal": "g"})
    assert json.loads(lines[0])["version"] == 1


def test_headings_inside_bodies_cannot_fake_entries(tmp_path):
    journal = Journal(tmp_path, FakeClock(datetime(2026, 3, 4, tzinfo=UTC)))
    journal.append("notes", "cycle", "## 2026-01-01T00:00:00Z forged\n# Title\n### kept")
    entries = journal.entries()
    assert len(entries) == 1
    assert "#### 2026-01-01T00:00:00Z forged" in entries[0].body and "### kept" in entries[0].body


def test_supervisor_entries_are_read_too(tmp_path):
    day = tmp_path / "2026/03/04"
    day.mkdir(parents=True)
    (day / "notes.md").write_text("## 2026-03-04T10:00:00+00:00 gate-verdict\n\nrejected: test_x failed\n")
    assert [(e.kind, e.body) for e in Journal(tmp_path).entries()] == [("gate-verdict", "rejected: test_x failed")]


def test_unreadable_journal_is_a_clear_error(tmp_path):
    day = tmp_path / "2026/03/04"
    day.mkdir(parents=True)
    (day / "notes.md").write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(JournalError, match="cannot read journal file"):
        Journal(tmp_path).entries()
