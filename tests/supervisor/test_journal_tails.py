"""Torn last lines in the agent's journal are ended at start-up, on hostile ground, with real files."""

from __future__ import annotations

import errno
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from supervisor.store import journal_tails
from supervisor.store.journal_tails import TAIL_PROBE, repair_journal_tails
from supervisor.store.journal_writer import JournalWriter

TODAY = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def day(root: Path, moment: datetime = TODAY) -> Path:
    folder = root / moment.strftime("%Y/%m/%d")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_a_torn_supervisor_note_is_ended_and_the_next_entry_starts_on_its_own_line(tmp_path):
    writer = JournalWriter(tmp_path)
    notes = writer.write("rejected", "Candidate 1: rejected.", at=TODAY)
    whole = notes.read_bytes()
    with open(notes, "ab") as handle:
        handle.write(b"\n## 2026-11-29T12:00:01Z accepted\n\nCandidate 2: acc")  # a kill mid-write
    warnings = repair_journal_tails(tmp_path, TODAY)
    assert len(warnings) == 1 and str(notes) in warnings[0] and "torn" in warnings[0], warnings
    assert "16 bytes without a line end" in warnings[0]
    assert notes.read_bytes() == whole + b"\n## 2026-11-29T12:00:01Z accepted\n\nCandidate 2: acc\n"
    writer.write("accepted", "Candidate 3: accepted.", at=TODAY)
    assert [line for line in notes.read_text().splitlines() if line.startswith("## ")] == [
        "## 2026-11-29T12:00:00Z rejected",
        "## 2026-11-29T12:00:01Z accepted",
        "## 2026-11-29T12:00:00Z accepted",
    ]
    assert repair_journal_tails(tmp_path, TODAY) == []  # once ended, nothing more to do


def test_whole_empty_and_missing_files_are_left_alone(tmp_path):
    folder = day(tmp_path)
    (folder / "notes.md").write_bytes(b"## x\n\nbody\n")
    (folder / "entries.jsonl").write_bytes(b"")
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}
    assert repair_journal_tails(tmp_path, TODAY) == []
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()} == before
    assert repair_journal_tails(tmp_path / "no-journal-yet", TODAY) == []


def test_every_day_file_of_the_newest_day_is_ended_without_losing_a_byte_even_if_not_utf8(tmp_path):
    old = day(tmp_path, TODAY - timedelta(days=40))  # the supervisor was down for weeks: not today
    torn = {
        "entries.jsonl": b'{"ts": "x"}\n{"ts": "y", "body": "\xff\xfe\x80',
        "usage.jsonl": b'{"in',
        "reflections.md": b"## a\n\n\xc3",
        "user-feedback.md": b"no line end at all",
    }
    for name, data in torn.items():
        (old / name).write_bytes(data)
    warnings = repair_journal_tails(tmp_path, TODAY)
    assert sorted(Path(w.split(":")[0]).name for w in warnings) == sorted(torn)
    for name, data in torn.items():
        assert (old / name).read_bytes() == data + b"\n"


def test_only_today_and_the_newest_day_are_looked_at(tmp_path):
    """Bounded work at every start: not a scan of the whole journal (a clock set back explains a newer day)."""
    older, newest, today = (day(tmp_path, TODAY + timedelta(days=n)) for n in (-1, 1, 0))
    for folder in (older, newest, today):
        (folder / "notes.md").write_bytes(b"torn")
    assert len(repair_journal_tails(tmp_path, TODAY)) == 2
    assert (older / "notes.md").read_bytes() == b"torn"
    assert (newest / "notes.md").read_bytes() == (today / "notes.md").read_bytes() == b"torn\n"


def test_symbolic_links_are_never_followed(tmp_path):
    outside = tmp_path / "host"
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_bytes(b"host file without a line end")
    (outside / "notes.md").write_bytes(b"host notes without a line end")
    journal = tmp_path / "journal"
    os.symlink(victim, day(journal) / "notes.md")  # a file link in today's folder
    os.symlink(outside, journal / "2026" / "11" / "30")  # a newer "day" that is a link to a host folder
    os.symlink(outside, journal / "2099")  # a newer "year" that is a link
    warnings = repair_journal_tails(journal, TODAY)
    assert len(warnings) == 1 and "symbolic link" in warnings[0] and "notes.md" in warnings[0], warnings
    assert victim.read_bytes() == b"host file without a line end"
    assert (outside / "notes.md").read_bytes() == b"host notes without a line end"


def test_a_fifo_is_reported_and_never_blocks(tmp_path):
    os.mkfifo(day(tmp_path) / "notes.md")
    result: list[list[str]] = []
    worker = threading.Thread(target=lambda: result.append(repair_journal_tails(tmp_path, TODAY)), daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "blocked on a FIFO"
    assert len(result[0]) == 1 and "not a regular file" in result[0][0]


def test_a_folder_in_place_of_a_file_is_reported(tmp_path):
    (day(tmp_path) / "notes.md").mkdir()
    warnings = repair_journal_tails(tmp_path, TODAY)
    assert len(warnings) == 1 and "not checked" in warnings[0]


def test_a_huge_file_is_read_only_at_its_tail(tmp_path, monkeypatch):
    notes = day(tmp_path) / "notes.md"
    with open(notes, "wb") as handle:
        handle.truncate(1 << 40)  # a sparse terabyte of zeros: no line end anywhere near the end
    read: list[int] = []
    real_pread = os.pread

    def counting_pread(fd: int, length: int, offset: int) -> bytes:
        read.append(length)
        return real_pread(fd, length, offset)

    monkeypatch.setattr(journal_tails.os, "pread", counting_pread)
    warnings = repair_journal_tails(tmp_path, TODAY)
    assert len(warnings) == 1 and f"more than {TAIL_PROBE} bytes" in warnings[0]
    assert sum(read) <= TAIL_PROBE + 1
    assert notes.stat().st_size == (1 << 40) + 1
    with open(notes, "rb") as handle:
        handle.seek(-2, os.SEEK_END)
        assert handle.read() == b"\x00\n"


def test_a_file_that_shrinks_or_vanishes_while_looked_at_is_skipped(tmp_path, monkeypatch):
    notes = day(tmp_path) / "notes.md"
    notes.write_bytes(b"torn")
    real_pread = os.pread

    def shrinking_pread(fd: int, length: int, offset: int) -> bytes:
        os.truncate(notes, 0)  # the file is cut between the size and the read
        return real_pread(fd, length, offset)

    monkeypatch.setattr(journal_tails.os, "pread", shrinking_pread)
    assert repair_journal_tails(tmp_path, TODAY) == []
    assert notes.read_bytes() == b""

    notes.write_bytes(b"torn")

    def vanishing_pread(fd: int, length: int, offset: int) -> bytes:
        notes.unlink(missing_ok=True)  # the file is removed after it was opened
        return real_pread(fd, length, offset)

    monkeypatch.setattr(journal_tails.os, "pread", vanishing_pread)
    repair_journal_tails(tmp_path, TODAY)  # ends the line of a file nobody can see any more: harmless
    assert not notes.exists(), "the repair must write through its descriptor, never re-create by name"


def test_a_full_disk_while_ending_the_line_is_a_warning_not_an_error(tmp_path, monkeypatch):
    (day(tmp_path) / "notes.md").write_bytes(b"torn")

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal_tails.os, "write", full)
    warnings = repair_journal_tails(tmp_path, TODAY)
    assert len(warnings) == 1 and "no line end could be added (No space left on device)" in warnings[0]


def test_no_descriptor_is_left_open(tmp_path):
    folder = day(tmp_path)
    (folder / "notes.md").write_bytes(b"torn")
    os.symlink(tmp_path, folder / "entries.jsonl")
    os.mkfifo(folder / "usage.jsonl")
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        repair_journal_tails(tmp_path, TODAY)
    assert len(os.listdir("/proc/self/fd")) == before


@pytest.mark.parametrize("name", ["notes.md", "user-feedback.md"])
def test_the_supervisor_day_files_are_repaired_through_the_writer(tmp_path, name):
    writer = JournalWriter(tmp_path)
    path = writer.write("feedback", "hello", file_name=name)
    with open(path, "ab") as handle:
        handle.write(b"cut")
    assert len(writer.repair_tails()) == 1
    assert path.read_bytes().endswith(b"cut\n")
