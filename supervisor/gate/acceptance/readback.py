"""Reading what the agent left in its workspace as untrusted data: no link is followed, sizes are capped.

Every path is walked one component at a time from a directory descriptor with `O_NOFOLLOW`, so a
symlink (or a chain of them) planted anywhere on the way is refused rather than followed; FIFOs and
devices are refused before they are read; reads stop at a cap.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

MAX_FILE_BYTES = 1_000_000
MAX_ENTRIES = 2_000
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK


class UnsafeFile(Exception):
    """A path the judge refuses to read (a link, not a regular file, too large); the message says which."""


class _Missing(UnsafeFile):
    """A component of the path does not exist."""


class SafeTree:
    """Read-only, no-follow access to files below `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @contextmanager
    def _dir(self, relative: str) -> Iterator[int]:
        fd = os.open(self.root, _DIR_FLAGS)
        try:
            for part in PurePosixPath(relative).parts if relative not in ("", ".") else ():
                if part in ("..", "/"):
                    raise UnsafeFile(f"{relative}: not a plain relative path")
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError as exc:
                    raise _Missing(f"{relative}: {part} does not exist") from exc
                except OSError as exc:
                    raise UnsafeFile(f"{relative}: {part} is not a real folder ({exc.strerror})") from exc
                os.close(fd)
                fd = child
            yield fd
        finally:
            os.close(fd)

    def read(self, relative: str, cap: int = MAX_FILE_BYTES) -> bytes | None:
        """The file's bytes; None if it does not exist; UnsafeFile for links, specials, oversize."""
        path = PurePosixPath(relative)
        try:
            with self._dir(str(path.parent)) as parent:
                try:
                    fd = os.open(path.name, _FILE_FLAGS, dir_fd=parent)
                except FileNotFoundError:
                    return None
                except OSError as exc:
                    raise UnsafeFile(f"{relative}: cannot be opened safely ({exc.strerror})") from exc
        except _Missing:
            return None
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise UnsafeFile(f"{relative}: not a regular file")
            data = handle.read(cap + 1)
        if len(data) > cap:
            raise UnsafeFile(f"{relative}: larger than {cap} bytes")
        return data

    def text(self, relative: str, cap: int = MAX_FILE_BYTES) -> str | None:
        data = self.read(relative, cap)
        return None if data is None else data.decode("utf-8", errors="replace")

    def exists_dir(self, relative: str) -> bool:
        """True only for a real folder reached without links; missing components give False."""
        try:
            with self._dir(relative):
                return True
        except UnsafeFile:
            return False

    def lexists(self, relative: str) -> bool:
        """Whether anything (file, link, folder) is at `relative`, without following a link."""
        path = PurePosixPath(relative)
        try:
            with self._dir(str(path.parent)) as parent:
                os.stat(path.name, dir_fd=parent, follow_symlinks=False)
                return True
        except (_Missing, FileNotFoundError):
            return False
        except UnsafeFile:
            return True  # something is there, just not a folder we walk through

    def listdir(self, relative: str) -> list[str]:
        """Names in a real folder (sorted, capped); [] when it is missing or not a real folder."""
        try:
            with self._dir(relative) as fd:
                return sorted(os.listdir(fd))[:MAX_ENTRIES]
        except UnsafeFile:
            return []
