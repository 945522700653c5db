"""Where the agent drops proposals: a folder it writes and the supervisor watches (watchfiles).

The folder is the agent's, so every file in it is treated as hostile input: never followed
through a symlink, size-capped, validated as a v1 message, and removed once handled.
"""

from __future__ import annotations

import os
import shutil
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import watchfiles

from supervisor.base import safe_fs
from supervisor.store.protocol import (
    MAX_MESSAGE_BYTES,
    Proposal,
    ProtocolError,
    TaskResult,
    parse_message,
    parse_proposal,
)

CONTAINER_UID = 10001


def prepare(outbox: Path) -> None:
    outbox.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(outbox, CONTAINER_UID, CONTAINER_UID)
    outbox.chmod(0o755)


def pending(outbox: Path) -> list[Path]:
    """Finished proposal files, oldest first (agents write `*.json.tmp` and rename).

    The agent may create and delete entries while we look: whatever vanishes is simply skipped.
    """
    found = []
    for path in outbox.iterdir():
        if not path.name.endswith(".json"):
            continue
        try:
            found.append((os.lstat(path).st_mtime, path.name, path))
        except FileNotFoundError:
            continue
    return [path for _, _, path in sorted(found)]


def read(path: Path) -> Proposal:
    """Read one proposal file; raises ProtocolError (or ValueError) for anything but a valid message.

    The file stays until `discard`: a supervisor killed before the proposal is recorded finds it again.
    """
    return parse_proposal(_read_regular(path, MAX_MESSAGE_BYTES))


def read_message(path: Path) -> Proposal | TaskResult:
    """Read one outbox file as a v1 proposal or a v2 task result (ProtocolError or ValueError otherwise)."""
    return parse_message(_read_regular(path, MAX_MESSAGE_BYTES))


def discard(path: Path) -> None:
    """Remove an entry, whatever the agent made it (a folder named like a proposal included)."""
    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()
    except FileNotFoundError:
        pass


def _read_regular(path: Path, limit: int) -> bytes:
    """Read a file the agent wrote, never through a symlink it planted, never more than limit+1."""
    try:
        return safe_fs.read_file(path, limit + 1, safe_fs.Bound.CUT).data
    except safe_fs.UnsafeFileError as exc:
        if exc.refusal is safe_fs.Refusal.NOT_REGULAR:
            raise ProtocolError(f"proposal entry {path.name} is not a regular file") from exc
        raise ProtocolError(f"proposal file {path.name} could not be opened safely ({exc.reason})") from exc
    except OSError as exc:
        raise ProtocolError(f"proposal file {path.name} could not be opened safely ({exc.strerror})") from exc


class OutboxWatcher:
    """Calls `on_change()` from a background thread whenever a proposal file appears."""

    def __init__(self, outbox: Path, on_change: Callable[[], None]) -> None:
        self.outbox = outbox
        self._on_change = on_change
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="outbox-watcher", daemon=True)

    def start(self) -> OutboxWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _watch(self) -> None:
        for changes in watchfiles.watch(
            self.outbox,
            stop_event=self._stop,
            debounce=50,
            step=20,
            recursive=False,
            rust_timeout=500,
            yield_on_timeout=False,
        ):
            if any(path.endswith(".json") for _, path in changes):
                self._on_change()
