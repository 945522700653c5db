"""At start-up: end a torn last line in the agent's journal, without removing a byte of it.

The supervisor appends whole entries to the agent's day files (`notes.md`, `user-feedback.md`), all
or nothing on a full disk; but a kill -9 or a crash of the machine mid-write, or an agent container
stopped mid-write, can leave a day file whose last line has no end. The next entry would then be
glued onto it (a JSON line becomes unreadable, a heading lands mid-line). At start-up the supervisor
looks at the last byte of each journal file of today and of the newest day folder and, when it is
not a line end, appends one and returns a warning naming the file. Nothing is cut: the journal is
the agent's memory, and the torn bytes may be the agent's own.

The journal is writable by the agent, so it is hostile ground: no path component is followed
through a symbolic link (each is opened relative to its parent with `O_NOFOLLOW`), a FIFO or other
non-regular file is reported and left alone (opened non-blocking, never read), only the tail of a
file is read (never the whole of a huge one), bytes are never decoded, and a file that vanishes or
shrinks while it is looked at is simply skipped.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

# The supervisor's own day files first; the agent's are ended too, so its next record is not lost.
DAY_FILES = ("notes.md", "user-feedback.md", "reflections.md", "entries.jsonl", "usage.jsonl")
TAIL_PROBE = 64 * 1024  # how far back a torn line is measured, for the warning only
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_YEAR, _TWO_DIGITS = re.compile(r"\d{4}"), re.compile(r"\d{2}")


def repair_journal_tails(root: Path, today: datetime) -> list[str]:
    """End torn last lines in today's and the newest day folder; one warning per file touched or refused."""
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the mount point itself
    except OSError:
        return []  # no journal yet: nothing to repair
    try:
        days = {(today.strftime("%Y"), today.strftime("%m"), today.strftime("%d")), _newest_day(root_fd)}
        warnings: list[str] = []
        for day in sorted(d for d in days if d is not None):
            warnings += _repair_day(root_fd, root.joinpath(*day), day)
        return warnings
    finally:
        os.close(root_fd)


def _newest_day(root_fd: int) -> tuple[str, str, str] | None:
    """The greatest YYYY/MM/DD that is a chain of real folders (no links), or None."""
    parts: list[str] = []
    fd = root_fd
    try:
        for pattern in (_YEAR, _TWO_DIGITS, _TWO_DIGITS):
            found = _newest_child(fd, pattern)
            if found is None:
                return None
            name, child = found
            if fd != root_fd:
                os.close(fd)
            fd = child
            parts.append(name)
    finally:
        if fd != root_fd:
            os.close(fd)
    return parts[0], parts[1], parts[2]


def _newest_child(fd: int, pattern: re.Pattern[str]) -> tuple[str, int] | None:
    for name in sorted(_names(fd, pattern), reverse=True):
        child = _open_dir(fd, name)
        if child is not None:
            return name, child
    return None


def _names(fd: int, pattern: re.Pattern[str]) -> Iterator[str]:
    """Names in a folder matching a date part; streamed, so a folder of a million entries costs no memory."""
    try:
        with os.scandir(fd) as entries:  # it reads through its own duplicate of fd
            for entry in entries:
                if pattern.fullmatch(entry.name):
                    yield entry.name
    except OSError:
        return


def _open_dir(parent_fd: int, name: str) -> int | None:
    try:
        return os.open(name, _DIR, dir_fd=parent_fd)
    except OSError:
        return None  # gone, not a folder, or a symbolic link: never followed


def _repair_day(root_fd: int, where: Path, day: tuple[str, str, str]) -> list[str]:
    fd, opened = root_fd, []
    try:
        for part in day:
            child = _open_dir(fd, part)
            if child is None:
                return []  # no such day (or a link the supervisor never writes through)
            opened.append(child)
            fd = child
        return [w for name in DAY_FILES if (w := end_torn_line(fd, name, where / name)) is not None]
    finally:
        for each in opened:
            os.close(each)


def end_torn_line(dir_fd: int, name: str, shown: Path) -> str | None:
    """Append a line end to `name` if its last byte is not one; a warning naming `shown`, or None."""
    try:
        fd = os.open(name, _FILE, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        why = "a symbolic link (never followed)" if exc.errno == errno.ELOOP else exc.strerror
        return f"{shown}: not checked for a torn last line: {why}; remove it if the agent should have it back"
    try:
        return _end(fd, shown)
    finally:
        os.close(fd)


def _end(fd: int, shown: Path) -> str | None:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        return f"{shown}: not checked for a torn last line: not a regular file; remove it"
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
