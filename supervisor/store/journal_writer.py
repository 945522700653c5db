"""Writes the supervisor's verdicts into the agent's memory journal, so its next reflection sees them.

The journal folder is bind-mounted writable into the agent's container, so the agent may have
planted symlinks in it. Every path component is opened relative to a directory descriptor with
`O_NOFOLLOW`: the supervisor never writes through a link to a host file.
"""

from __future__ import annotations

import os
import stat
from datetime import datetime
from pathlib import Path

from supervisor.base.appendfile import append_all
from supervisor.base.errors import OuroborosError
from supervisor.base.text import printable
from supervisor.store.candidates import CandidateRecord, now
from supervisor.store.journal_tails import repair_journal_tails


class JournalError(OuroborosError, OSError):
    """The journal entry could not be written safely."""


class JournalWriter:
    """Appends `## <ISO-8601 UTC> <kind>` entries to `<root>/YYYY/MM/DD/notes.md` (or another day file)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def write(self, kind: str, body: str, at: datetime | None = None, file_name: str = "notes.md") -> Path:
        at = at or now()
        heading = f"## {at.strftime('%Y-%m-%dT%H:%M:%SZ')} {kind}"
        entry = f"\n{heading}\n\n{printable(body.strip())}\n"
        parts = [at.strftime("%Y"), at.strftime("%m"), at.strftime("%d")]
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        owner = os.fstat(fd)
        try:
            for part in parts:
                child = _enter(fd, part, owner)
                os.close(fd)
                fd = child
            _append(fd, file_name, entry.encode(), owner)
        finally:
            os.close(fd)
        return self.root.joinpath(*parts, file_name)

    def repair_tails(self) -> list[str]:
        """At start-up: end a torn last line of today's and the newest day's files (journal_tails.py)."""
        return repair_journal_tails(self.root, now())


def _enter(parent_fd: int, name: str, owner: os.stat_result) -> int:
    created = True
    try:
        os.mkdir(name, 0o755, dir_fd=parent_fd)
    except FileExistsError:
        created = False
    try:
        child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent_fd)
    except OSError as exc:
        raise JournalError(f"journal folder {name} is not a real folder ({exc.strerror}); remove it") from exc
    if created:
        _same_owner(child, owner)
    return child


def _same_owner(fd: int, owner: os.stat_result) -> None:
    """What the supervisor creates in the journal stays writable by the journal's owner (the agent)."""
    if os.geteuid() == 0:
        os.fchown(fd, owner.st_uid, owner.st_gid)


def _append(dir_fd: int, name: str, data: bytes, owner: os.stat_result) -> None:
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(name, flags, 0o644, dir_fd=dir_fd)
    except OSError as exc:
        raise JournalError(f"journal file {name} could not be opened safely ({exc.strerror})") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise JournalError(f"journal file {name} is not a regular file; remove it")
        if os.fstat(fd).st_size == 0:
            _same_owner(fd, owner)
        append_all(fd, data, fsync=False, name=name)  # all or nothing: a full disk leaves no torn entry
    finally:
        os.close(fd)


def verdict_note(record: CandidateRecord) -> str:
    """The journal body for a verdict: what was proposed, what happened, and each failing test."""
    lines = [
        f"Candidate {record.id}: {record.state}.",
        f"Proposal: {record.proposal.summary if record.proposal else '(none)'}",
        f"Commit: {record.commit or '(none)'}",
    ]
    if record.generation is not None:
        lines.append(f"Generation: {record.generation}")
    lines += [f"- {reason}" for reason in record.reasons]
    for failure in (record.gate.failures if record.gate else [])[:20]:
        message = failure.message.strip().splitlines()
        lines.append(f"- failing test `{failure.test_id}`: {message[0][:300] if message else ''}")
    return "\n".join(lines)
