"""Keeping the repository small: refs and objects packed, old candidate records archived.

The repository config turns git's automatic gc off (it could run while a gate reads), so the
supervisor calls `maintain` now and then.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from supervisor.base import periodic
from supervisor.base.git_ops import Git
from supervisor.gate.config import RetentionPolicy
from supervisor.gate.retention import prune_records

FULL_GC_EVERY_S = 86_400  # a full gc of the repository at most once a day; geometric repacks between
PRUNE_AFTER = "2.weeks.ago"  # unreachable objects are dropped by a full gc once they are this old

log = logging.getLogger(__name__)


def maintain(git: Git, state_dir: Path, read_policy: Callable[[], RetentionPolicy]) -> None:
    """Pack loose refs and objects (the repository config turns automatic gc off): run now and then.

    The packs are merged geometrically (a pack is rewritten only when the newer ones together
    reach its size: each object is copied O(log n) times in all, so the work does not grow
    with the lineage as a gc each time did); a full gc, which rewrites every object and drops
    the unreachable ones, runs at most once a day."""
    git.run("pack-refs", "--all", "--prune", check=False, timeout_s=600)
    stamp = state_dir / "git-gc"
    if periodic.due(stamp, FULL_GC_EVERY_S):
        # --cruft: the unreachable objects go into a cruft pack that records each one's age and
        # that geometric repacks leave alone. Set loose instead, the next geometric repack rolled
        # them into a new pack, whose time the next gc gave them back: never two weeks old, never pruned.
        gc = ("gc", "--quiet", f"--prune={PRUNE_AFTER}")
        if (
            git.run(*gc, "--cruft", check=False, timeout_s=1800).returncode == 0
            or git.run(*gc, check=False, timeout_s=1800).returncode == 0
        ):  # a git before 2.37
            periodic.done(stamp)
    else:
        git.run("repack", "-d", "-q", "--geometric=2", check=False, timeout_s=1800)
    _moved, error = prune_records(state_dir, read_policy)  # accepted ones too
    if error:
        log.warning("%s", error)
