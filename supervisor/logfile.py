"""The agent's output on disk: appended, rotated by size, and followed like `tail -F`."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path


class RotatingLog:
    """Append raw bytes; past `max_bytes` the file becomes `.1` (older ones shift, `keep` kept)."""

    def __init__(self, path: Path, max_bytes: int = 10 * 1024 * 1024, keep: int = 3) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(path, "ab")
        self._lock = threading.Lock()  # an old run's output may still drain while a new one starts

    def write(self, chunk: bytes) -> None:
        with self._lock:
            self._handle.write(chunk)
            self._handle.flush()
            if self._handle.tell() >= self.max_bytes:
                self._rotate()

    def _rotate(self) -> None:
        self._handle.close()
        for index in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self._handle = open(self.path, "ab")

    def close(self) -> None:
        self._handle.close()


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


def follow(path: Path, poll_s: float = 0.25, stop=lambda: False) -> Iterator[str]:
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
