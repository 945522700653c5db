"""Append-only files of whole lines that a kill or a full disk can never leave half-written for good.

An append is one `write` of a complete line ending in `\\n`. If the write fails part-way (ENOSPC,
EIO), the file is cut back to its size before the append, so no torn record stays behind. A kill
-9 in the middle of a write can still leave a tail without its newline: `repair_tail` finds it at
start-up, moves those bytes to `<file>.torn-<n>` for a person to look at, cuts the file back to its
last complete line, and returns a warning that names the file.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from supervisor.base.errors import OuroborosError
from supervisor.base.safe_fs import Access, open_regular

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_TAIL_PROBE = 64 * 1024


class DiskFullError(OuroborosError, OSError):
    """There is no room left to write a state file; nothing is decided until there is."""


def is_disk_full(exc: BaseException) -> bool:
    """True for ENOSPC/EDQUOT, by the error number only.

    Never by the message: a git error quotes paths and link targets the candidate chose, so text
    like "No space left on device" proves nothing. A subprocess that failed for lack of space is
    recognised by the filesystem itself (`Gatekeeper.disk_full`, a statvfs), not by what it said.
    """
    if isinstance(exc, DiskFullError):
        return True
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


def append_line(path: Path, line: bytes, fsync: bool = True) -> None:
    """Append one complete line (a newline is added), or nothing at all."""
    if b"\n" in line:
        raise ValueError("a record line must not contain a newline")
    data = line + b"\n"
    fd = open_regular(path, Access.APPEND, create=0o644)
    try:
        append_all(fd, data, fsync=fsync, name=path)
    finally:
        os.close(fd)


def append_all(fd: int, data: bytes, fsync: bool = True, name: Path | str = "?") -> None:
    """Write `data` at the end of an O_APPEND fd; on any failure cut the file back and re-raise."""
    size = os.fstat(fd).st_size
    try:
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
        if fsync:
            os.fsync(fd)
    except OSError as exc:
        _cut_back(fd, size)
        if exc.errno in DISK_FULL_ERRNOS:
            raise DiskFullError(
                exc.errno, f"no space left to append to {name}; free disk space (the supervisor resumes by itself)"
            ) from exc
        raise


def _cut_back(fd: int, size: int) -> None:
    try:
        os.ftruncate(fd, size)
    except OSError:
        pass  # repair_tail at the next start finds what is left


def repair_tail(path: Path) -> str | None:
    """Cut a torn last line off `path`; returns a warning naming the file, or None if it was whole."""
    try:
        fd = open_regular(path, Access.READ_WRITE)
    except FileNotFoundError:
        return None
    try:
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return None
        keep = _last_newline_end(fd, size)
        torn = os.pread(fd, size - keep, keep)
        kept_as = _save_torn(path, torn)
        os.ftruncate(fd, keep)
        os.fsync(fd)
    finally:
        os.close(fd)
    return (
        f"{path}: its last record was torn ({len(torn)} bytes without an end, e.g. a kill or a full "
        f"disk during a write); it was cut off and kept in {kept_as}"
    )


def _last_newline_end(fd: int, size: int) -> int:
    end = size
    while end > 0:
        start = max(0, end - _TAIL_PROBE)
        chunk = os.pread(fd, end - start, start)
        position = chunk.rfind(b"\n")
        if position >= 0:
            return start + position + 1
        end = start
    return 0


def _save_torn(path: Path, torn: bytes) -> Path:
    n = 1
    while path.with_name(f"{path.name}.torn-{n}").exists():
        n += 1
    target = path.with_name(f"{path.name}.torn-{n}")
    try:
        target.write_bytes(torn)
    except OSError:
        pass  # no room to keep a copy: the warning still says what happened
    return target


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` whole (temp file, fsync, rename); a failure leaves the old file and no temp."""
    temp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        if exc.errno in DISK_FULL_ERRNOS:
            raise DiskFullError(exc.errno, f"no space left to write {path}; free disk space") from exc
        raise
