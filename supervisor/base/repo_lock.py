"""One repository, one supervisor: a lock that lives with the repository, not with a home.

The state a supervisor guards (ledger, candidates, worktrees, gate scratch, decision log) lives in
the repository's git dir, and two homes can name one repository (a symlinked `repo.git`). So the
lock is an exclusive `flock` on the git directory itself: a directory cannot be deleted while a
supervisor uses it, so "remove the lock file" cannot let a second supervisor in (a lock *file*
could be unlinked and recreated, and a newcomer would lock the new inode). The holder's pid and
home are written beside it for messages only; they are never trusted to decide anything.

The kernel drops the lock when the holder dies, even by kill -9, so there is nothing to clean up.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import IO

from supervisor.base.errors import OuroborosError

HOLDER_FILE = "supervisor.holder"


class RepositoryLockedError(OuroborosError, RuntimeError):
    """Another supervisor runs on this repository."""


class AlreadyRunningError(OuroborosError, RuntimeError):
    """Another supervisor holds this instance (home)."""


class RepoLock:
    """Held for a supervisor's whole life; `acquire` refuses at once if another holds it."""

    def __init__(self, git_dir: Path) -> None:
        self.git_dir = Path(git_dir).resolve()
        self._fd: int | None = None

    def acquire(self, home: Path, attempts: int = 10, pause_s: float = 0.1) -> RepoLock:
        fd = os.open(self.git_dir, os.O_RDONLY | os.O_DIRECTORY)
        for _ in range(attempts):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(pause_s)  # a short-lived probe may hold it for an instant
        else:
            os.close(fd)
            raise RepositoryLockedError(
                f"another supervisor ({self.holder() or 'holder unknown'}) runs on the repository {self.git_dir}; "
                "stop it with `supervisor stop --home <its home>` first (one repository, one supervisor)"
            )
        self._fd = fd
        self._write_holder(home)
        return self

    def holder(self) -> str:
        try:
            return (self.git_dir / "ouroboros" / HOLDER_FILE).read_text()[:300].strip()
        except OSError:
            return ""

    def _write_holder(self, home: Path) -> None:
        path = self.git_dir / "ouroboros" / HOLDER_FILE
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"pid {os.getpid()}, home {home}\n")
        except OSError:
            pass  # informative only (a full disk must not stop a start)

    def is_held_by_someone(self) -> bool:
        """For probes: True if a supervisor holds the repository now."""
        fd = os.open(self.git_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


class HomeLock:
    """The home's own lock and pid file: what `supervisor status` and `stop` probe (a probe holds it
    shared for an instant). The repository lock, taken first, is the one that keeps supervisors apart."""

    def __init__(self, run_dir: Path, pid_file: Path, home: Path) -> None:
        self.run_dir, self.pid_file, self.home = run_dir, pid_file, home
        self._handle: IO[str] | None = None

    def acquire(self, attempts: int = 10, pause_s: float = 0.1) -> HomeLock:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.run_dir / "supervisor.lock", "a+")
        for _ in range(attempts):
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(pause_s)
        else:
            handle.close()
            raise AlreadyRunningError(
                f"another supervisor (pid {read_pid(self.pid_file) or 'unknown'}) runs "
                f"{self.home}; stop it with `supervisor stop` first"
            )
        self._handle = handle
        self.pid_file.write_text(str(os.getpid()))
        return self

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None
