"""Blobs out of one `git cat-file --batch` process, one after another, each copied out in bounded chunks.

`Git.read_blobs` holds every blob in memory at once; exporting a tree of 100,000 files (or a few
huge ones) that way needs the whole checkout's size in memory. Here the object ids go in through a
temporary file (so git never waits on a pipe we are not reading), and each blob is copied to its
destination in chunks of at most CHUNK bytes as it is read: memory stays bounded by one chunk,
whatever the tree holds. A git that stops answering is killed at the deadline.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import IO

CHUNK = 1 << 20


class BlobStreamError(RuntimeError):
    """The stream broke (git died, answered out of order, or named an object it does not have)."""


class BlobStream:
    """`for sha in shas: stream.copy(sha, out)`, in the order the shas were given."""

    def __init__(self, command: list[str], *, cwd: Path, env: dict[str, str], shas: list[str], timeout_s: float):
        self._ids: IO[bytes] = tempfile.TemporaryFile()
        self._ids.write(b"".join(sha.encode() + b"\n" for sha in shas))
        self._ids.seek(0)
        try:
            self._process = subprocess.Popen(
                command, stdin=self._ids, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=cwd, env=env
            )
        except BaseException:
            self._ids.close()
            raise
        self._timer = threading.Timer(timeout_s, self._process.kill)
        self._timer.daemon = True
        self._timer.start()
        assert self._process.stdout is not None
        self._out: IO[bytes] = self._process.stdout

    def copy(self, sha: str, out: int) -> None:
        """The next blob, which must be `sha`, written to the descriptor `out` in chunks."""
        header = self._out.readline()
        fields = header.split()
        if len(fields) != 3 or fields[0].decode(errors="replace") != sha or fields[1] != b"blob":
            why = header[:200].decode(errors="replace").strip() or "git stopped answering"
            raise BlobStreamError(f"reading blob {sha[:12]}: {why}")
        left = int(fields[2])
        while left > 0:
            chunk = self._out.read(min(left, CHUNK))
            if not chunk:
                raise BlobStreamError(f"reading blob {sha[:12]}: git stopped {left} bytes short")
            _write_all(out, chunk)
            left -= len(chunk)
        if self._out.read(1) != b"\n":
            raise BlobStreamError(f"reading blob {sha[:12]}: the stream is out of step")

    def close(self) -> None:
        self._timer.cancel()
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        self._out.close()
        self._ids.close()

    def __enter__(self) -> BlobStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
