"""Reading the agent's journal on the host without trusting it: no links followed, no FIFO opened, bounded."""

from __future__ import annotations

import os
import stat
from pathlib import Path

JOURNAL_FILES = ("notes.md", "reflections.md", "user-feedback.md")


def _open_dir(parent_fd: int | None, name: str) -> int | None:
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent_fd)
    except OSError:
        return None


def _newest(dir_fd: int, width: int) -> str | None:
    try:
        names = os.listdir(dir_fd)
    except OSError:
        return None
    digits = sorted(name for name in names if len(name) == width and name.isdigit())
    return digits[-1] if digits else None


def latest_day(journal: Path) -> tuple[str, dict[str, str]] | None:
    """The newest YYYY/MM/DD folder and the tail of each journal file in it."""
    fds: list[int] = []
    try:
        fd = _open_dir(None, str(journal))
        parts = []
        for width in (4, 2, 2):
            if fd is None:
                return None
            fds.append(fd)
            name = _newest(fd, width)
            if name is None:
                return None
            parts.append(name)
            fd = _open_dir(fd, name)
        if fd is None:
            return None
        fds.append(fd)
        return "-".join(parts), {name: tail(fd, name, 16_000) for name in JOURNAL_FILES}
    finally:
        for opened in fds:
            os.close(opened)


def tail(dir_fd: int, name: str, limit: int) -> str:
    """The last `limit` bytes of a regular file (never a link, FIFO or device), decoded leniently."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            return "(not a regular file: not shown)"
        handle.seek(max(0, info.st_size - limit))
        return handle.read(limit).decode("utf-8", "replace")
