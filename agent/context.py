"""What the prompts include from memory: capped recent entries plus a capped summary of the rest.

The size of the memory section has an upper bound set by ContextLimits, however long the journal
grows, so input tokens per cycle stay flat (measured by bench/context_growth.py).
"""

from __future__ import annotations

import re
from collections import Counter

from agent.config import ContextLimits
from agent.journal import JournalEntry

_LESSONS = re.compile(r"^#+ *Lessons learned\s*$(.*?)(?=^#+ |\Z)", re.MULTILINE | re.DOTALL | re.IGNORECASE)


def estimate_tokens(text: str) -> int:
    """The agent's own estimate (about 4 characters a token), used for reporting, not billing."""
    return (len(text) + 3) // 4


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 20].rstrip() + " [... cut]"


def lessons_from(entry: JournalEntry) -> list[str]:
    """Bullet lines of a reflection's 'Lessons learned' section."""
    match = _LESSONS.search(entry.body)
    if not match:
        return []
    return [line.strip()[2:].strip() for line in match.group(1).splitlines() if line.strip().startswith(("- ", "* "))]


def summarize(older: list[JournalEntry], limits: ContextLimits) -> str:
    if not older:
        return "No older entries."
    kinds = Counter(e.kind for e in older)
    counts = ", ".join(f"{kind} {n}" for kind, n in kinds.most_common(8))
    lines = [f"{len(older)} older entries from {older[0].ts} to {older[-1].ts} ({counts})."]
    seen: set[str] = set()
    for entry in reversed(older):  # newest lessons first
        for lesson in lessons_from(entry):
            if len(seen) >= limits.lessons:
                break
            if lesson not in seen:
                seen.add(lesson)
                lines.append(f"- {clip(lesson, 200)}")
    if seen:
        lines.insert(1, "Lessons from older reflections (newest first):")
    return clip("\n".join(lines), limits.summary_chars)


def _render_entry(entry: JournalEntry, limits: ContextLimits) -> str:
    return f"#### {entry.ts} {entry.kind} ({entry.file})\n{clip(entry.body, limits.entry_chars)}"


def build_memory(entries: list[JournalEntry], limits: ContextLimits) -> str:
    """The memory section of the first prompt of a cycle, bounded by `limits`."""
    feedback = [e for e in entries if e.file == "user-feedback"]
    others = [e for e in entries if e.file != "user-feedback"]
    split = len(others) - limits.recent_entries
    recent, older = others[max(split, 0) :], others[: max(split, 0)]
    parts = ["## Memory", "### Summary of older journal entries", summarize(older, limits)]
    parts += ["### Recent journal entries (oldest first)"] + (
        [_render_entry(e, limits) for e in recent] or ["None yet."]
    )
    shown_feedback = feedback[-limits.feedback_entries :] if limits.feedback_entries else []
    parts += ["### Recent user feedback"] + ([_render_entry(e, limits) for e in shown_feedback] or ["None."])
    return "\n\n".join(parts)
