"""Reading, walking and appending files the agent can write, without trusting a byte or a name of them.

The agent writes its workspace, outbox, journal and goals, so anything found there may be a planted
symbolic link (to a host file, or a chain of links that each look in-tree and climb out), a FIFO
that would block a read forever, a device, a folder where a file is expected, a file of a terabyte
(sparse), one that grows, shrinks or is swapped while it is read, or a name that is not UTF-8.
Every supervisor module that touches such a file goes through this one:

- `Folder.open(path)` opens a trusted root (its parents are the operator's and are followed; the
  root itself is not, unless `follow=True`); below it every name is one component, looked up
  relative to a directory descriptor with `O_NOFOLLOW`, so no link is ever followed at any depth.
- `Folder.folder` / `Folder.descend` step into real folders only (optionally creating them);
  `Folder.names` streams a folder's names, `Folder.entries` lists them with their type (`Kind`),
  read without following links; `Folder.readlink` reads a link's text, never its target.
- `open_regular` (and `Folder.open_file`) opens a regular file only: `O_NOFOLLOW | O_NONBLOCK`, so
  a FIFO is never waited on, then the descriptor is checked, so a FIFO, device, socket or folder is
  refused before a byte is read or written. Appending is `open_regular(..., Access.APPEND)`
  followed by `appendfile.append_all` (one write of whole lines, cut back on failure).
- `read_file` / `Folder.read` read at most `limit` bytes (plus one, to see more): a larger file is
  refused (`Bound.REFUSE`, by its size before a byte is read) or cut to its first or last `limit`
  bytes (`Bound.CUT`, `Bound.TAIL`); `Content.grew` says the file grew while it was read, for the
  callers that refuse that.

Names are `str` as `os` hands them out: bytes that are not UTF-8 come back as lone surrogates
(surrogateescape) and go back to the kernel unchanged; `is_utf8` tells them apart. What vanishes
mid-walk or before it is opened raises `FileNotFoundError` (or shows as `Kind.MISSING`); an open
file that is unlinked or replaced is read as it was opened (the descriptor holds the old file).
Everything refused for safety raises `UnsafeFileError`, an `OSError`, so one `except OSError`
covers "missing, refused or unreadable" where a caller needs no more.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from pathlib import Path, PurePosixPath
from types import TracebackType

from supervisor.base.errors import OuroborosError

__all__ = [
    "Access",
    "Bound",
    "Content",
    "Entry",
    "Folder",
    "Kind",
    "Refusal",
    "UnsafeFileError",
    "is_utf8",
    "open_regular",
    "plain_parts",
    "read_fd",
    "read_file",
]

_SAFE = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_CHUNK = 1 << 20  # a read of n bytes allocates n first: never ask for more than this at once


class Refusal(StrEnum):
    """Why a path was refused; the value is the phrase the messages use."""

    LINK = "a symbolic link (never followed)"
    NOT_FOLDER = "not a real folder"
    NOT_REGULAR = "not a regular file"
    TOO_LARGE = "too large"
    NOT_RELATIVE = "not a plain relative path"


class UnsafeFileError(OuroborosError, OSError):
    """A path refused for safety; `refusal` says why, `where` names the component at fault."""

    def __init__(self, refusal: Refusal, where: str, reason: str | None = None) -> None:
        super().__init__(f"{where}: {reason or refusal.value}")
        self.refusal = refusal
        self.where = where
        self.reason = reason or refusal.value


class Access(Enum):
    """How a regular file is opened; `O_NOFOLLOW | O_NONBLOCK` are always added."""

    READ = os.O_RDONLY
    WRITE = os.O_WRONLY
    REPLACE = os.O_WRONLY | os.O_TRUNC
    READ_WRITE = os.O_RDWR
    APPEND = os.O_WRONLY | os.O_APPEND
    READ_APPEND = os.O_RDWR | os.O_APPEND


class Bound(Enum):
    """What a read does with a file larger than its limit."""

    REFUSE = "refuse"  # UnsafeFileError(TOO_LARGE)
    CUT = "cut"  # its first `limit` bytes
    TAIL = "tail"  # its last `limit` bytes


class Kind(Enum):
    """What a name in a folder is, seen without following a link."""

    FILE = "file"
    FOLDER = "folder"
    LINK = "link"
    OTHER = "other"  # FIFO, socket, device
    MISSING = "missing"  # vanished between the listing and the look


@dataclass(frozen=True)
class Entry:
    name: str
    kind: Kind


@dataclass(frozen=True)
class Content:
    """Bytes read from a regular file, with its mode and size when it was opened."""

    data: bytes
    mode: int
    size: int
    grew: bool  # bytes beyond the size it had when opened were read


def is_utf8(name: str) -> bool:
    """False for a name (or link text) whose bytes are not UTF-8 (os hands those out as lone surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _kind(mode: int) -> Kind:
    if stat.S_ISLNK(mode):
        return Kind.LINK
    if stat.S_ISDIR(mode):
        return Kind.FOLDER
    if stat.S_ISREG(mode):
        return Kind.FILE
    return Kind.OTHER


def _refused_open(exc: OSError, where: str) -> OSError:
    """The error to raise for a failed no-follow open of a file."""
    if exc.errno == errno.ELOOP:
        return UnsafeFileError(Refusal.LINK, where)
    if exc.errno in (errno.ENXIO, errno.EISDIR):  # a FIFO nobody reads (write side), a folder
        return UnsafeFileError(Refusal.NOT_REGULAR, where)
    if exc.errno == errno.ENOTDIR:
        return UnsafeFileError(Refusal.NOT_FOLDER, where, f"a parent is {Refusal.NOT_FOLDER.value}")
    return exc


def open_regular(
    path: str | Path,
    access: Access = Access.READ,
    *,
    at: int | None = None,
    create: int | None = None,
    exclusive: bool = False,
) -> int:
    """A descriptor on a regular file, never through a link, never blocking; the caller closes it.

    `path` is one name relative to the folder descriptor `at`, or (without `at`) a path whose
    parents are trusted. `create` is the mode of a file made if missing (`exclusive`: it must be).
    """
    flags = access.value | _SAFE | (os.O_CREAT if create is not None else 0) | (os.O_EXCL if exclusive else 0)
    where = os.fspath(path)
    try:
        fd = os.open(path, flags, 0o644 if create is None else create, dir_fd=at)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise _refused_open(exc, where) from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafeFileError(Refusal.NOT_REGULAR, where)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_up_to(fd: int, count: int) -> bytes:
    chunks: list[bytes] = []
    got = 0
    while got < count:
        chunk = os.read(fd, min(count - got, _CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_fd(fd: int, limit: int, bound: Bound, where: str) -> Content:
    """Read a regular file's descriptor from its start (or its tail) under `limit`; see `Bound`."""
    info = os.fstat(fd)
    if bound is Bound.TAIL:
        start = max(0, info.st_size - limit)
        os.lseek(fd, start, os.SEEK_SET)
        data = _read_up_to(fd, limit)
        return Content(data, info.st_mode, info.st_size, start + len(data) > info.st_size)
    if bound is Bound.REFUSE and info.st_size > limit:  # a sparse terabyte costs no read at all
        raise UnsafeFileError(Refusal.TOO_LARGE, where, f"larger than {limit} bytes")
    # One byte past the size shows growth, one past the limit shows "too large"; never more.
    wanted = min(limit + 1, info.st_size + 1) if bound is Bound.REFUSE else min(limit, info.st_size + 1)
    data = _read_up_to(fd, wanted)
    if len(data) > limit:
        raise UnsafeFileError(Refusal.TOO_LARGE, where, f"larger than {limit} bytes")
    return Content(data, info.st_mode, info.st_size, len(data) > info.st_size)


def read_file(path: str | Path, limit: int, bound: Bound = Bound.REFUSE, *, at: int | None = None) -> Content:
    """`open_regular` + `read_fd`: a regular file's bytes, bounded, never through a link or a FIFO."""
    fd = open_regular(path, at=at)
    try:
        return read_fd(fd, limit, bound, os.fspath(path))
    finally:
        os.close(fd)


class Folder:
    """An open folder; every name below it is looked up relative to it, never through a link."""

    def __init__(self, fd: int, shown: str, created: bool = False) -> None:
        self.fd = fd
        self.shown = shown  # for messages only
        self.created = created  # this call made it (its owner may need setting)

    @classmethod
    def open(cls, path: str | Path, *, follow: bool = False) -> Folder:
        """A trusted root: its parents are followed; the root itself only with `follow=True`."""
        where = os.fspath(path)
        try:
            fd = os.open(path, _DIR | (0 if follow else os.O_NOFOLLOW))
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise _refused_folder(exc, where, lambda: os.lstat(path).st_mode) from exc
        return cls(fd, where)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Folder:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def _shown(self, name: str) -> str:
        return f"{self.shown}/{name}"

    # -- walking ---------------------------------------------------------------------------

    def folder(self, name: str, *, create: int | None = None) -> Folder:
        """The real folder `name` in this one (made with mode `create` if missing and asked)."""
        _check_name(name, self._shown(name))
        created = False
        if create is not None:
            try:
                os.mkdir(name, create, dir_fd=self.fd)
                created = True
            except FileExistsError:
                pass
        try:
            fd = os.open(name, _DIR | os.O_NOFOLLOW, dir_fd=self.fd)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise _refused_folder(
                exc, self._shown(name), lambda: os.stat(name, dir_fd=self.fd, follow_symlinks=False).st_mode
            ) from exc
        return Folder(fd, self._shown(name), created)

    def descend(self, parts: Sequence[str], *, create: int | None = None) -> Folder:
        """The real folder at `parts` below this one, one component at a time; a new Folder to close.

        `where` of an UnsafeFileError (and `filename` of a FileNotFoundError) is the component at fault.
        """
        current = Folder(os.dup(self.fd), self.shown)
        try:
            for part in parts:
                child = current.folder(part, create=create)
                current.close()
                current = child
        except BaseException:
            current.close()
            raise
        return current

    def names(self) -> Iterator[str]:
        """The names in this folder, streamed (a folder of a million entries costs no memory)."""
        with os.scandir(self.fd) as found:  # it reads through its own duplicate of fd
            for entry in found:
                yield entry.name

    def entries(self, limit: int | None = None) -> list[Entry]:
        """Every name with its type, sorted by name; links are reported, never followed.

        With `limit`, a folder of more names is refused (TOO_LARGE) once name `limit + 1` is read,
        before the rest is listed or looked at: memory and time stay bounded by `limit`.
        """
        names = os.listdir(self.fd) if limit is None else self._names_up_to(limit)
        return sorted((Entry(name, self.kind(name)) for name in names), key=lambda e: e.name)

    def _names_up_to(self, limit: int) -> list[str]:
        names: list[str] = []
        for name in self.names():
            if len(names) >= limit:
                raise UnsafeFileError(Refusal.TOO_LARGE, self.shown, f"more than {limit} names")
            names.append(name)
        return names

    def kind(self, name: str) -> Kind:
        try:
            return _kind(os.stat(name, dir_fd=self.fd, follow_symlinks=False).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return Kind.MISSING

    def readlink(self, name: str) -> str:
        return os.readlink(name, dir_fd=self.fd)

    # -- files -----------------------------------------------------------------------------

    def open_file(
        self, name: str, access: Access = Access.READ, *, create: int | None = None, exclusive: bool = False
    ) -> int:
        """`open_regular` for a name in this folder."""
        _check_name(name, self._shown(name))
        return open_regular(name, access, at=self.fd, create=create, exclusive=exclusive)

    def read(self, name: str, limit: int, bound: Bound = Bound.REFUSE) -> Content:
        """`read_file` for a name in this folder."""
        _check_name(name, self._shown(name))
        return read_file(name, limit, bound, at=self.fd)


def _check_name(name: str, where: str) -> None:
    if name in ("", ".", "..") or "/" in name:
        raise UnsafeFileError(Refusal.NOT_RELATIVE, where)


def plain_parts(relative: str) -> list[str]:
    """The components of a plain relative path ('' and '.' are the folder itself); refuses '..' and '/'."""
    if relative in ("", "."):
        return []
    path = PurePosixPath(relative)
    if path.is_absolute() or ".." in path.parts:
        raise UnsafeFileError(Refusal.NOT_RELATIVE, relative)
    return list(path.parts)


def _refused_folder(exc: OSError, where: str, mode_of: Callable[[], int]) -> OSError:
    """The error to raise for a failed no-follow open of a folder (ENOTDIR is a link or a file)."""
    if exc.errno == errno.ELOOP:
        return UnsafeFileError(Refusal.LINK, where)
    if exc.errno != errno.ENOTDIR:
        return exc
    try:
        is_link = stat.S_ISLNK(mode_of())
    except OSError:
        is_link = False
    return UnsafeFileError(Refusal.LINK if is_link else Refusal.NOT_FOLDER, where)
