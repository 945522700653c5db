from datetime import UTC, datetime, timedelta

from agent.config import ContextLimits
from agent.context import build_memory, lessons_from
from agent.journal import Journal


def _fill(root, count):
    clock_now = [datetime(2026, 1, 1, tzinfo=UTC)]
    journal = Journal(root, lambda: clock_now[0])
    for i in range(count):
        clock_now[0] += timedelta(minutes=30)
        if i % 2:
            body = f"### Summary\nCycle {i}.\n\n### Lessons learned\n- lesson number {i}\n\n### Improvement recommendations\n- none"
            journal.append("reflections", "reflection", body)
        else:
            journal.append("notes", "cycle", f"**Goal:** goal {i}\n\n" + "details " * 80)
    return journal


def test_memory_size_is_bounded_however_long_the_journal(tmp_path):
    limits = ContextLimits()
    small = build_memory(_fill(tmp_path / "a", 10).entries(), limits)
    large = build_memory(_fill(tmp_path / "b", 1000).entries(), limits)
    upper = limits.summary_chars + (limits.recent_entries + limits.feedback_entries) * (limits.entry_chars + 80) + 400
    assert len(large) <= upper
    assert len(large) <= 1.1 * len(small) + limits.summary_chars


def test_recent_entries_and_older_lessons_are_included(tmp_path):
    memory = build_memory(_fill(tmp_path, 40).entries(), ContextLimits(recent_entries=4, lessons=3))
    assert "lesson number 39" in memory  # the newest reflection, quoted in full
    assert "- lesson number 35" in memory  # an older lesson, in the summary
    assert "lesson number 1\n" not in memory  # the oldest ones are summarised away
    assert "36 older entries" in memory


def test_feedback_is_quoted_separately(tmp_path):
    journal = _fill(tmp_path, 4)
    journal.append("user-feedback", "feedback", "please keep reports short")
    memory = build_memory(journal.entries(), ContextLimits())
    assert "### Recent user feedback" in memory and "please keep reports short" in memory


def test_lessons_are_read_from_the_section_only(tmp_path):
    journal = _fill(tmp_path, 2)
    assert lessons_from(journal.entries()[1]) == ["lesson number 1"]
