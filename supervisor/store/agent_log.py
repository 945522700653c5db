"""The agent's output on disk: appended, rotated by size, and followed like `tail -F`."""

from __future__ import annotations

import os
import signal
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path


class RotatingLog:
    """Append raw bytes; past `max_bytes` the file becomes `.1` (older ones shift, `keep` kept).

    It also follows an outside rotation (logrotate without copytruncate): on SIGHUP (see
    `reopen_on_sighup`), or at the next write after the path stops naming the open file (checked at
    most once a second), it reopens the path. Write failures (a full disk) cost the chunk, never
    the caller: the bytes lost are counted and noted in the file once it can be written again.
    """

    def __init__(self, path: Path, max_bytes: int = 10 * 1024 * 1024, keep: int = 3) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = max(1, keep)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(path, "ab")
        self._lock = threading.Lock()  # an old run's output may still drain while a new one starts
        self._reopen = False
        self._checked = time.monotonic()
        self.lost_bytes = 0
        _OPEN_LOGS.add(self)

    def write(self, chunk: bytes) -> None:
        with self._lock:
            self._follow_outside_rotation()
            if self.lost_bytes:
                self._handle.write(
                    b"\n[ouroboros: %d bytes of agent output lost: could not write the log]\n" % self.lost_bytes
                )
                self.lost_bytes = 0
            self._handle.write(chunk)
            self._handle.flush()
            if self._handle.tell() >= self.max_bytes:
                self._rotate()

    def note_lost(self, count: int, exc: OSError) -> None:
        """A write failed (e.g. ENOSPC): count what was lost, so the next good write says so."""
        with self._lock:
            self.lost_bytes += count

    def request_reopen(self) -> None:
        """Reopen the path at the next write (async-signal-safe: it only sets a flag)."""
        self._reopen = True

    def _follow_outside_rotation(self) -> None:
        now = time.monotonic()
        if not self._reopen and now - self._checked < 1.0:
            return
        self._checked = now
        try:
            moved = os.stat(self.path).st_ino != os.fstat(self._handle.fileno()).st_ino
        except FileNotFoundError:
            moved = True
        if moved or self._reopen:
            self._reopen = False
            self._handle.close()
            self._handle = open(self.path, "ab")

    def _rotate(self) -> None:
        self._handle.close()
        for index in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self._handle = open(self.path, "ab")

    def close(self) -> None:
        with self._lock:
            self._handle.close()
        _OPEN_LOGS.discard(self)


_OPEN_LOGS: weakref.WeakSet[RotatingLog] = weakref.WeakSet()


def reopen_on_sighup() -> None:
    """Make SIGHUP reopen every open RotatingLog (for logrotate); call from the main thread."""

    def handler(signum: int, frame: object) -> None:
        for log in list(_OPEN_LOGS):
            log.request_reopen()

    signal.signal(signal.SIGHUP, handler)


def tail_lines(path: Path, count: int) -> list[str]:
    """The last `count` lines of a file (reads only the end of it)."""
    if not path.exists():
        return []
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - max(65536, count * 512)))
        data = handle.read()
    return data.decode("utf-8", "replace").splitlines()[-count:] if count else []


def follow(path: Path, poll_s: float = 0.25, stop: Callable[[], bool] = lambda: False) -> Iterator[str]:
    """Yield text appended to `path` from now on, surviving rotation (reopens on a new inode)."""
    handle = None
    inode = None
    while not stop():
        if handle is None and path.exists():
            handle = open(path, "rb")
            inode = os.fstat(handle.fileno()).st_ino
            handle.seek(0, os.SEEK_END)
        if handle is not None:
            data = handle.read()
            if data:
                yield data.decode("utf-8", "replace")
                continue
            try:
                rotated = os.stat(path).st_ino != inode
            except FileNotFoundError:
                rotated = True
            if rotated:
                handle.close()
                handle = None
                # The next file starts fresh: read it from its beginning.
                while not path.exists() and not stop():
                    time.sleep(poll_s)
                if path.exists():
                    handle = open(path, "rb")
                    inode = os.fstat(handle.fileno()).st_ino
                continue
        time.sleep(poll_s)
