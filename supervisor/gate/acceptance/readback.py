"""Reading what the agent left in its workspace as untrusted data: no link is followed, sizes are capped.

Every path is walked one component at a time from a directory descriptor with `O_NOFOLLOW`, so a
symlink (or a chain of them) planted anywhere on the way is refused rather than followed; FIFOs and
devices are refused before they are read; reads stop at a cap.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from supervisor.base.safe_fs import Folder, Kind, Refusal, UnsafeFileError, plain_parts

MAX_FILE_BYTES = 1_000_000
MAX_ENTRIES = 2_000


class UnsafeFile(Exception):
    """A path the judge refuses to read (a link, not a regular file, too large); the message says which."""


class _Missing(UnsafeFile):
    """A component of the path does not exist."""


class SafeTree:
    """Read-only, no-follow access to files below `root` (through supervisor/base/safe_fs.py)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @contextmanager
    def _dir(self, relative: str) -> Iterator[Folder]:
        try:
            parts = plain_parts(relative)
        except UnsafeFileError as exc:
            raise UnsafeFile(f"{relative}: not a plain relative path") from exc
        with Folder.open(self.root) as root:
            try:
                folder = root.descend(parts)
            except FileNotFoundError as exc:
                raise _Missing(f"{relative}: {exc.filename} does not exist") from exc
            except UnsafeFileError as exc:
                raise UnsafeFile(
                    f"{relative}: {PurePosixPath(exc.where).name} is not a real folder ({exc.reason})"
                ) from exc
            except OSError as exc:
                raise UnsafeFile(f"{relative}: {exc.filename} is not a real folder ({exc.strerror})") from exc
        with folder:
            yield folder

    def read(self, relative: str, cap: int = MAX_FILE_BYTES) -> bytes | None:
        """The file's bytes; None if it does not exist; UnsafeFile for links, specials, oversize."""
        path = PurePosixPath(relative)
        try:
            with self._dir(str(path.parent)) as parent:
                return _read(parent, path.name, relative, cap)
        except _Missing:
            return None

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
                return parent.kind(path.name) is not Kind.MISSING
        except _Missing:
            return False
        except UnsafeFile:
            return True  # something is there, just not a folder we walk through

    def listdir(self, relative: str) -> list[str]:
        """Names in a real folder (sorted, capped); [] when it is missing or not a real folder."""
        try:
            with self._dir(relative) as folder:
                return heapq.nsmallest(MAX_ENTRIES, folder.names())  # never the whole folder in memory
        except UnsafeFile:
            return []


def _read(parent: Folder, name: str, relative: str, cap: int) -> bytes | None:
    try:
        return parent.read(name, cap).data
    except FileNotFoundError:
        return None
    except UnsafeFileError as exc:
        if exc.refusal is Refusal.NOT_REGULAR:
            raise UnsafeFile(f"{relative}: not a regular file") from exc
        if exc.refusal is Refusal.TOO_LARGE:
            raise UnsafeFile(f"{relative}: larger than {cap} bytes") from exc
        raise UnsafeFile(f"{relative}: cannot be opened safely ({exc.reason})") from exc
    except OSError as exc:
        raise UnsafeFile(f"{relative}: cannot be opened safely ({exc.strerror})") from exc
