"""Writes the supervisor's notes (verdicts, rollbacks, refusals) into the agent's memory journal, so its
next reflection sees them; `journal_note` is the one way the supervisor writes one.

The journal folder is bind-mounted writable into the agent's container, so the agent may have
planted symlinks in it. Every path component is opened relative to a directory descriptor with
`O_NOFOLLOW` (supervisor/base/safe_fs.py): the supervisor never writes through a link to a host file.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from supervisor.base.appendfile import append_all
from supervisor.base.errors import OuroborosError
from supervisor.base.safe_fs import Access, Folder, Refusal, UnsafeFileError
from supervisor.base.text import printable
from supervisor.store.candidates import CandidateRecord, now
from supervisor.store.decision_kinds import DecisionKind
from supervisor.store.decision_log import DecisionLog
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
        with Folder.open(self.root, follow=True) as root:
            owner = os.fstat(root.fd)
            with _enter(root, parts, owner) as day:
                _append(day, file_name, entry.encode(), owner)
        return self.root.joinpath(*parts, file_name)

    def repair_tails(self) -> list[str]:
        """At start-up: end a torn last line of today's and the newest day's files (journal_tails.py)."""
        return repair_journal_tails(self.root, now())


def _enter(root: Folder, parts: list[str], owner: os.stat_result) -> Folder:
    """The day folder, each part made (owned like the root) if missing; never through a link."""
    folder = root.descend([])  # its own descriptor: every step closes the one before
    for part in parts:
        try:
            with folder:
                child = folder.folder(part, create=0o755)
        except OSError as exc:
            why = exc.reason if isinstance(exc, UnsafeFileError) else exc.strerror
            raise JournalError(f"journal folder {part} is not a real folder ({why}); remove it") from exc
        folder = child
        if child.created:
            _same_owner(child.fd, owner)
    return folder


def _same_owner(fd: int, owner: os.stat_result) -> None:
    """What the supervisor creates in the journal stays writable by the journal's owner (the agent)."""
    if os.geteuid() == 0:
        os.fchown(fd, owner.st_uid, owner.st_gid)


def _append(folder: Folder, name: str, data: bytes, owner: os.stat_result) -> None:
    try:
        fd = folder.open_file(name, Access.APPEND, create=0o644)
    except UnsafeFileError as exc:
        if exc.refusal is Refusal.NOT_REGULAR:
            raise JournalError(f"journal file {name} is not a regular file; remove it") from exc
        raise JournalError(f"journal file {name} could not be opened safely ({exc.reason})") from exc
    except OSError as exc:
        raise JournalError(f"journal file {name} could not be opened safely ({exc.strerror})") from exc
    try:
        if os.fstat(fd).st_size == 0:
            _same_owner(fd, owner)
        append_all(fd, data, fsync=False, name=name)  # all or nothing: a full disk leaves no torn entry
    finally:
        os.close(fd)


def journal_note(
    journal: JournalWriter, decisions: DecisionLog, kind: str, body: str, candidate: str | None = None
) -> bool:
    """Write a note for the agent; False if its journal refused it. The agent can break its own
    journal, which must never stop the supervisor nor block a decision: the refusal is logged instead
    (`journal-refused`, which the decision log throttles), naming the note's kind and the error."""
    try:
        journal.write(kind, body)
    except (JournalError, OSError) as exc:
        decisions.append(
            DecisionKind.JOURNAL_REFUSED, candidate=candidate, reasons=[str(exc)[:300]], details={"kind": kind}
        )
        return False
    return True


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
