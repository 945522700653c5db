"""Finding and stopping a running supervisor without trusting a pid from another PID namespace.

The supervisor holds an exclusive flock on HOME/run/supervisor.lock for as long as it runs. Who
holds it is read from /proc/locks, which the kernel shows with pids translated into *our* PID
namespace (0 when the holder lives in another one, e.g. a supervisor inside a container). So:

- `holder(lock)`: the pid we may signal, or None when the lock is free, or `FOREIGN` when it is held
  from a namespace we cannot see into.
- `request_stop(run_dir)` writes HOME/run/control/stop; the event loop sees it (`stop_requested`)
  and stops as on SIGTERM. That works across namespaces (the file is on the shared volume).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

FOREIGN = -1
CONTROL_DIR = "control"
STOP_FILE = "stop"


def is_locked(lock: Path) -> bool:
    """True if some process holds the exclusive lock (a probe takes a shared lock for an instant)."""
    try:
        handle = open(lock)
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def holder(lock: Path) -> int | None:
    """The pid (in our namespace) holding `lock` exclusively; FOREIGN if not visible; None if free."""
    if not is_locked(lock):
        return None
    try:
        info = lock.stat()
        table = Path("/proc/locks").read_text()
    except OSError:
        return FOREIGN
    for pid in _flock_pids(table, info.st_dev, info.st_ino):
        if pid > 0 and _same_pid_namespace(pid):
            return pid
    return FOREIGN


def _same_pid_namespace(pid: int) -> bool:
    """Only a process in our own PID namespace is ever signalled; anything else gets the control file."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid") == os.readlink("/proc/self/ns/pid")
    except OSError:
        return False


def _flock_pids(table: str, dev: int, ino: int) -> list[int]:
    """Pids of FLOCK WRITE locks on (dev, ino); a line reads `1: FLOCK ADVISORY WRITE 123 08:01:4567 0 EOF`."""
    wanted = f"{os.major(dev):02x}:{os.minor(dev):02x}:{ino}"
    pids = []
    for line in table.splitlines():
        fields = line.split()
        if "->" in fields:
            continue  # a waiter, not the holder
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[3] == "WRITE" and _same_inode(fields[5], wanted):
            try:
                pids.append(int(fields[4]))
            except ValueError:
                continue
    return pids


def _same_inode(field: str, wanted: str) -> bool:
    major, minor, ino = field.split(":") if field.count(":") == 2 else ("", "", "")
    want_major, want_minor, want_ino = wanted.split(":")
    try:
        return int(major, 16) == int(want_major, 16) and int(minor, 16) == int(want_minor, 16) and ino == want_ino
    except ValueError:
        return False


def stop_file(run_dir: Path) -> Path:
    return run_dir / CONTROL_DIR / STOP_FILE


def request_stop(run_dir: Path) -> Path:
    path = stop_file(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("stop\n")
    return path


def stop_requested(run_dir: Path) -> bool:
    """For the event loop (one stat per tick)."""
    return stop_file(run_dir).exists()


def clear(run_dir: Path) -> None:
    """For the event loop at start: a stop request left by an earlier run must not stop this one."""
    stop_file(run_dir).unlink(missing_ok=True)
