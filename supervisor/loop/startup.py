"""Chores of `supervisor start` that decide nothing: the locks, the signal handlers, leftovers, disk caps.

The repository lock comes before anything is read or written (a second supervisor on the same
repository, through whichever home, stops there); SIGTERM and SIGINT only ask the loop to stop.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from supervisor.base import process_control
from supervisor.base.git_ops import find_common_dir
from supervisor.base.repo_lock import HomeLock, RepoLock
from supervisor.gate.agent_container import give_to_agent
from supervisor.loop import diskcap, outbox
from supervisor.loop.context import LoopContext
from supervisor.loop.diskcap import DiskWatch
from supervisor.store.agent_log import reopen_on_sighup
from supervisor.store.instance import Instance

log = logging.getLogger(__name__)


def take_locks(instance: Instance) -> tuple[RepoLock, HomeLock]:
    """The repository's lock, then the home's; a stop request left for an earlier run is cleared."""
    repo_lock = RepoLock(find_common_dir(instance.repo)).acquire(instance.home)
    try:
        home_lock = HomeLock(instance.run_dir, instance.pid_file, instance.home).acquire()
    except BaseException:
        repo_lock.release()
        raise
    process_control.clear(instance.run_dir)  # a stop request left for an earlier run is not for this one
    return repo_lock, home_lock


class SignalHandlers:
    """SIGTERM and SIGINT call `on_stop` (only from the main thread can they be set); SIGHUP makes
    agent.log reopen at its next write (logrotate)."""

    def __init__(self) -> None:
        self._old: dict[int, Any] = {}

    def install(self, on_stop: Callable[[], None]) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._old[signum] = signal.signal(signum, lambda *_: on_stop())
        reopen_on_sighup()

    def restore(self) -> None:
        for signum, handler in self._old.items():
            signal.signal(signum, handler)
        self._old.clear()


def clear_leftovers(ctx: LoopContext) -> None:
    """What an earlier run left that nothing will finish: its containers; the outbox made ready."""
    removed = ctx.engine.reconcile(instance=ctx.instance.instance_id)
    if removed:
        log.info("removed %d leftover container(s) of an earlier run", len(removed))
    outbox.prepare(ctx.instance.outbox)


def ready_agent_areas(ctx: LoopContext, *, worktrees: Path) -> DiskWatch:
    """The host areas the agent writes, capped, then its own folders made and given to it."""
    watch = cap_agent_disk(ctx, worktrees=worktrees)  # before the folders are made
    for folder in (ctx.instance.journal, ctx.instance.goals):
        folder.mkdir(parents=True, exist_ok=True)
        give_to_agent(folder)
    return watch


def cap_agent_disk(ctx: LoopContext, *, worktrees: Path) -> DiskWatch:
    """Each host area the agent writes on its own size-capped filesystem (supervisor/loop/diskcap.py)."""
    instance, disk = ctx.instance, ctx.config.disk
    areas = diskcap.agent_areas(
        worktrees=worktrees,
        memory=instance.memory,
        outbox=instance.outbox,
        workspace_mb=disk.workspace_mb,
        memory_mb=disk.memory_mb,
        outbox_mb=disk.outbox_mb,
    )
    for message in diskcap.cap_areas(areas, instance.disk_images, disk.mode):
        log.info("%s", message)
    return DiskWatch(areas)
