"""`supervisor gate` beside a supervisor on the same repository: its own scratch, its own label.

An operator may gate any commit while a supervisor runs the repository, and CI gates a clone no
supervisor runs. So the command takes no repository lock (it would keep a supervisor from starting
for as long as a gate runs, or refuse the operator); instead it shares nothing a supervisor clears.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sandbox.errors import SandboxError
from supervisor.base.remove_tree import remove_tree
from supervisor.base.safe_fs import Folder
from supervisor.gate.passes import GateSite

log = logging.getLogger(__name__)

GATE_RUNS = "gate-runs"  # <state>/gate-runs/<pid>-<random>: `supervisor gate`'s own scratch, never a supervisor's
GATE_LABEL_SUFFIX = "-gate"
ABANDONED_NEW_S = 3600
Reap = Callable[[str], object]  # removes the containers of one gate run, given its folder's name


def gate_label(instance: str, run: str) -> str:
    """The instance label of one gate run's containers: `<instance>-gate-<run folder>`.

    No supervisor reconciles it (a supervisor reconciles its exact instance id), and it names the run,
    so the next gate can remove the containers of a gate killed -9 (nothing else would: they could
    run for as long as the candidate's tests hang) without touching those of a gate still running.
    """
    return f"{instance}{GATE_LABEL_SUFFIX}-{run}"


def beside_supervisor(instance: str, folder: Path) -> GateSite:
    """Where a gate independent of a supervisor on the same repository (running, or starting now) works.

    A supervisor clears its scratch and worktree areas when it starts and removes its instance's
    containers when it starts or its engine returns; this gate uses neither: its files live in its
    own locked folder (`own_scratch`) and its containers carry `gate_label`, a label no
    supervisor reconciles. It takes no repository lock, so it runs beside a supervisor and in CI
    alike, and never stops a supervisor from starting. It moves no ref; the objects it writes are
    fresh, so a concurrent `git prune` (after its grace) leaves them be.
    """
    site = GateSite(scratch=folder / "tmp", work_area=folder / "work", instance=instance)
    for area in (site.scratch, site.work_area):
        area.mkdir(exist_ok=True)
    if instance.endswith(f"{GATE_LABEL_SUFFIX}-{folder.name}"):
        return site
    return GateSite(scratch=site.scratch, work_area=site.work_area, instance=gate_label(instance, folder.name))


@contextmanager
def own_scratch(state_dir: Path, warn: Callable[[str], None] | None = None, reap: Reap | None = None) -> Iterator[Path]:
    """A folder under <state>/gate-runs/ that only this command uses, held by an flock while it runs.

    Folders of earlier gates killed before they could clean up are removed first: a folder whose
    lock can be taken has no living owner. `reap` removes that owner's containers before its
    folder goes (an engine error keeps the folder, so the next gate tries again). A new folder is
    locked before it gets its final name, so no other gate can mistake it for an abandoned one;
    its containers are made only after that. Warnings go to this module's logger unless `warn` is given.
    """
    warn = warn or _log_warning
    root = state_dir / GATE_RUNS
    root.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(root, warn, reap)
    name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    fresh = root / f".new-{name}"
    fresh.mkdir()
    with Folder.open(fresh) as lock:
        fcntl.flock(lock.fd, fcntl.LOCK_EX)
        folder = fresh.rename(root / name)
        try:
            yield folder
        finally:
            remove_tree(folder, warn)


def _remove_abandoned(root: Path, warn: Callable[[str], None], reap: Reap | None) -> None:
    for entry in root.iterdir():
        if entry.name.startswith(".new-"):
            if time.time() - entry.lstat().st_mtime > ABANDONED_NEW_S:  # a gate killed between mkdir and rename
                remove_tree(entry, lambda message: None)
            continue
        try:
            lock = Folder.open(entry)
        except OSError:
            continue
        with lock:
            try:
                fcntl.flock(lock.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a gate still runs in it
            if _reaped(entry.name, warn, reap):  # under the lock: no new gate can own this name
                remove_tree(entry, lambda message: None)


def _reaped(run: str, warn: Callable[[str], None], reap: Reap | None) -> bool:
    if reap is None:
        return True
    try:
        reap(run)
    except SandboxError as exc:
        warn(f"the containers of an earlier gate ({run}) could not be removed now: {exc}; the next gate tries again")
        return False
    return True


def _log_warning(message: str) -> None:
    log.warning("%s", message)
