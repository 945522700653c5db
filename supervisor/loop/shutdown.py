"""Stopping `supervisor start`: every step is tried even if an earlier one failed.

A full disk or an engine that went away must not leave the agent running, the pid file behind or the
locks held: each step's failure is logged and the next step runs; the pid file and the locks go last,
whatever happened.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from supervisor.base.repo_lock import HomeLock, RepoLock

Step = tuple[str, Callable[[], None]]  # (what it does, for the log; how)
log = logging.getLogger(__name__)


def shut_down(steps: Sequence[Step], *, pid_file: Path, locks: Sequence[HomeLock | RepoLock | None]) -> None:
    """Run `steps` in order, then remove `pid_file` and release `locks` (those taken) in order."""
    try:
        for name, step in steps:
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - shutdown must reach its end whatever failed
                log.warning("during shutdown, could not %s: %s", name, exc)
    finally:
        pid_file.unlink(missing_ok=True)
        for lock in locks:
            if lock is not None:
                lock.release()
