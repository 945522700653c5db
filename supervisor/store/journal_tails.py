"""At start-up: end a torn last line in the agent's journal, without removing a byte of it.

The supervisor appends whole entries to the agent's day files (`notes.md`, `user-feedback.md`), all
or nothing on a full disk; but a kill -9 or a crash of the machine mid-write, or an agent container
stopped mid-write, can leave a day file whose last line has no end. The next entry would then be
glued onto it (a JSON line becomes unreadable, a heading lands mid-line). At start-up the supervisor
looks at the last byte of each journal file of today and of the newest day folder and, when it is
not a line end, appends one and returns a warning naming the file. Nothing is cut: the journal is
the agent's memory, and the torn bytes may be the agent's own.

The journal is writable by the agent, so it is hostile ground: no path component is followed
through a symbolic link (each is opened relative to its parent with `O_NOFOLLOW`, by
supervisor/base/safe_fs.py), a FIFO or other non-regular file is reported and left alone (opened non-blocking, never read), only the tail of a
file is read (never the whole of a huge one), bytes are never decoded, and a file that vanishes or
shrinks while it is looked at is simply skipped.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from supervisor.base.safe_fs import Access, Folder, Refusal, UnsafeFileError

# The supervisor's own day files first; the agent's are ended too, so its next record is not lost.
DAY_FILES = ("notes.md", "user-feedback.md", "reflections.md", "entries.jsonl", "usage.jsonl")
TAIL_PROBE = 64 * 1024  # how far back a torn line is measured, for the warning only
_YEAR, _TWO_DIGITS = re.compile(r"\d{4}"), re.compile(r"\d{2}")


def repair_journal_tails(root: Path, today: datetime) -> list[str]:
    """End torn last lines in today's and the newest day folder; one warning per file touched or refused."""
    try:
        journal = Folder.open(root, follow=True)  # the mount point itself
    except OSError:
        return []  # no journal yet: nothing to repair
    with journal:
        days = {(today.strftime("%Y"), today.strftime("%m"), today.strftime("%d")), _newest_day(journal)}
        warnings: list[str] = []
        for day in sorted(d for d in days if d is not None):
            warnings += _repair_day(journal, root.joinpath(*day), day)
        return warnings


def _newest_day(journal: Folder) -> tuple[str, str, str] | None:
    """The greatest YYYY/MM/DD that is a chain of real folders (no links), or None."""
    parts: list[str] = []
    folder = journal.descend([])
    try:
        for pattern in (_YEAR, _TWO_DIGITS, _TWO_DIGITS):
            found = _newest_child(folder, pattern)
            if found is None:
                return None
            name, child = found
            folder.close()
            folder = child
            parts.append(name)
    finally:
        folder.close()
    return parts[0], parts[1], parts[2]


def _newest_child(folder: Folder, pattern: re.Pattern[str]) -> tuple[str, Folder] | None:
    for name in sorted(_names(folder, pattern), reverse=True):
        child = _open_dir(folder, name)
        if child is not None:
            return name, child
    return None


def _names(folder: Folder, pattern: re.Pattern[str]) -> Iterator[str]:
    """Names in a folder matching a date part; streamed, so a folder of a million entries costs no memory."""
    try:
        yield from (name for name in folder.names() if pattern.fullmatch(name))
    except OSError:
        return


def _open_dir(parent: Folder, name: str) -> Folder | None:
    try:
        return parent.folder(name)
    except OSError:
        return None  # gone, not a folder, or a symbolic link: never followed


def _repair_day(journal: Folder, where: Path, day: tuple[str, str, str]) -> list[str]:
    try:
        folder = journal.descend(day)
    except OSError:
        return []  # no such day (or a link the supervisor never writes through)
    with folder:
        return [w for name in DAY_FILES if (w := end_torn_line(folder, name, where / name)) is not None]


def end_torn_line(folder: Folder, name: str, shown: Path) -> str | None:
    """Append a line end to `name` if its last byte is not one; a warning naming `shown`, or None."""
    try:
        fd = folder.open_file(name, Access.READ_APPEND)
    except FileNotFoundError:
        return None
    except UnsafeFileError as exc:
        if exc.refusal is Refusal.NOT_REGULAR:
            return f"{shown}: not checked for a torn last line: not a regular file; remove it"
        return f"{shown}: not checked for a torn last line: {exc.reason}; remove it if the agent should have it back"
    except OSError as exc:
        return f"{shown}: not checked for a torn last line: {exc.strerror}; remove it if the agent should have it back"
    try:
        return _end(fd, shown)
    finally:
        os.close(fd)


def _end(fd: int, shown: Path) -> str | None:
    info = os.fstat(fd)
    try:
        last = os.pread(fd, 1, info.st_size - 1) if info.st_size else b""
        if last in (b"", b"\n"):
            return None  # empty, whole, or cut shorter while we looked
        torn = _torn_length(fd, info.st_size)
        os.write(fd, b"\n")  # O_APPEND: at the end, whatever was appended meanwhile
    except OSError as exc:
        return (
            f"{shown}: its last line is torn but no line end could be added ({exc.strerror}); "
            f"the next entry starts on a new line anyway"
        )
    return (
        f"{shown}: its last line was torn ({torn} without a line end: a kill, crash or full disk "
        f"mid-write); a line end was added, nothing was removed"
    )


def _torn_length(fd: int, size: int) -> str:
    """How many bytes follow the last line end, looking back at most TAIL_PROBE bytes."""
    start = max(0, size - TAIL_PROBE)
    chunk = os.pread(fd, size - start, start)
    position = chunk.rfind(b"\n")
    if position >= 0:
        return f"{len(chunk) - position - 1} bytes"
    return f"{len(chunk)} bytes" if start == 0 else f"more than {TAIL_PROBE} bytes"
