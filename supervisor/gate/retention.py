"""Rejected proposals are kept for inspection, but not forever: a retention policy, then a prune.

Each rejected commit stays under `refs/ouroboros/rejected/<id>` until the newest ones kept exceed
the policy's count, age or total size (space held only by rejected commits, not shared with
`main`, the generations or rolled-back history); older ones lose their ref. `git prune` with a grace
period then drops the unreachable loose objects (fresh rejected commits are loose), and `git gc`
repacks at most every `gc_every_s`: objects younger than the grace survive both, so a commit or
graft being written by another process at that moment never loses an object it still needs.
git runs with hooks disabled (supervisor/base/git_ops.py), so nothing of the agent's tree runs.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from supervisor.base.errors import OuroborosError
from supervisor.base.git_ops import Git
from supervisor.gate.config import RetentionPolicy
from supervisor.store.candidates import REJECTED_PREFIX, CandidateStore

KEEP_REACHABLE = ["--branches", "--tags", "--glob=refs/ouroboros/rolled-back/*"]
SIZES_FILE = "rejected-sizes.json"
LAST_GC_FILE = "last-gc"


class Rejected(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ref: str
    commit: str
    at: int = Field(description="Commit time, unix seconds.")
    bytes: int = Field(description="On-disk size of the objects only this commit's history holds.")


class RetentionResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kept: int = 0
    deleted: list[str] = Field(default_factory=list)
    gc_ran: bool = False
    archived: int = Field(default=0, description="Finished candidate records moved to the archive.")
    error: str = ""


class SpaceReport(BaseModel):
    """What `supervisor status` shows about the repository's size."""

    model_config = ConfigDict(extra="forbid")

    objects_bytes: int = Field(description="Loose and packed objects on disk.")
    rejected: int = Field(description="Rejected proposals kept.")
    rejected_bytes: int = Field(description="Space held only by the kept rejected proposals.")


def rejected(git: Git, sizes: dict[str, int]) -> list[Rejected]:
    """Every kept rejected proposal, newest first; sizes measured once per commit and cached."""
    text = git.out("for-each-ref", "--format=%(refname) %(objectname) %(committerdate:unix)", REJECTED_PREFIX)
    found = []
    for line in text.splitlines():
        ref, commit, at = line.split(" ")
        if commit not in sizes:
            sizes[commit] = unique_bytes(git, commit)
        found.append(Rejected(ref=ref, commit=commit, at=int(at or 0), bytes=sizes[commit]))
    return sorted(found, key=lambda r: (r.at, r.ref), reverse=True)


def unique_bytes(git: Git, commit: str) -> int:
    """Disk size of the objects reachable from `commit` but not from main, generations or rollbacks."""
    listing = git.out("rev-list", "--objects", commit, "--not", *KEEP_REACHABLE)
    shas = "\n".join(line.split(" ", 1)[0] for line in listing.splitlines() if line)
    if not shas:
        return 0
    sizes = git.out("cat-file", "--batch-check=%(objectsize:disk)", input=(shas + "\n").encode())
    return sum(int(size) for size in sizes.split() if size.isdigit())


def select_expired(kept: list[Rejected], policy: RetentionPolicy, now_s: float) -> list[Rejected]:
    """The newest prefix that fits count, age and total size is kept; everything older goes."""
    total = 0
    for index, item in enumerate(kept):
        total += item.bytes
        too_old = now_s - item.at > policy.max_age_days * 86400
        if index >= policy.keep or too_old or total > policy.max_total_mb * 1024 * 1024:
            return kept[index:]
    return []


def enforce(
    git: Git, read_policy: Callable[[], RetentionPolicy], state_dir: Path, now_s: float | None = None
) -> RetentionResult:
    """Drop rejected refs beyond the policy, prune what they alone held; never raises (bookkeeping)."""
    now_s = time.time() if now_s is None else now_s
    result = RetentionResult()
    try:
        policy = read_policy()
        sizes = _load_sizes(state_dir)
        kept = rejected(git, sizes)
        expired = select_expired(kept, policy, now_s)
        for item in expired:
            git.delete_ref(item.ref, item.commit)
            result.deleted.append(item.ref)
        result.kept = len(kept) - len(expired)
        live = {item.commit for item in kept[: result.kept]}
        _save_sizes(state_dir, {sha: size for sha, size in sizes.items() if sha in live})
        grace = f"{int(policy.prune_grace_s)}.seconds.ago"
        if result.deleted:  # cheap: only loose objects, which is what fresh rejected commits are
            git.run("prune", f"--expire={grace}", timeout_s=600)
        result.gc_ran = gc(git, policy, state_dir, now_s)
    except (OuroborosError, ValidationError, OSError, ValueError) as exc:  # never blocks a verdict
        result.error = str(exc)
    result.archived, error = prune_records(state_dir, read_policy)
    result.error = result.error or error
    return result


def prune_records(state_dir: Path, read_policy: Callable[[], RetentionPolicy]) -> tuple[int, str]:
    """Archive finished candidate records beyond `keep_records` (CandidateStore.prune); never raises.

    Returns how many moved and an error text ('' if none). Cheap when there is nothing to do (one
    folder listing), so it runs after every rejection and in the periodic maintenance.
    """
    try:
        return CandidateStore(state_dir / "candidates").prune(read_policy().keep_records), ""
    except (OuroborosError, ValidationError, OSError, ValueError) as exc:
        return 0, f"archiving finished candidate records failed ({exc}); it is tried again later"


def gc(git: Git, policy: RetentionPolicy, state_dir: Path, now_s: float) -> bool:
    """`git gc` (repack, drop unreachable objects older than the grace), at most every gc_every_s."""
    if not _gc_due(state_dir, policy, now_s):
        return False
    git.run("gc", "--quiet", f"--prune={int(policy.prune_grace_s)}.seconds.ago", timeout_s=1800)
    stamp = state_dir / LAST_GC_FILE
    stamp.write_text(str(now_s))
    return True


def space(git: Git, state_dir: Path | None = None) -> SpaceReport:
    """Objects on disk, and how many rejected proposals are kept with the space only they hold."""
    counts = dict(line.split(": ", 1) for line in git.out("count-objects", "-v").splitlines() if ": " in line)
    kib = sum(int(counts.get(key, "0")) for key in ("size", "size-pack", "size-garbage"))
    sizes = _load_sizes(state_dir) if state_dir else {}
    kept = rejected(git, sizes)
    return SpaceReport(objects_bytes=kib * 1024, rejected=len(kept), rejected_bytes=sum(r.bytes for r in kept))


def _gc_due(state_dir: Path, policy: RetentionPolicy, now_s: float) -> bool:
    try:
        last = float((state_dir / LAST_GC_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return True
    return not 0 <= now_s - last < policy.gc_every_s  # a stamp from the future (a clock set back) is due


def _load_sizes(state_dir: Path) -> dict[str, int]:
    try:
        data = json.loads((state_dir / SIZES_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return {str(k): int(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _save_sizes(state_dir: Path, sizes: dict[str, int]) -> None:
    temp = state_dir / f"{SIZES_FILE}.tmp{os.getpid()}"
    temp.write_text(json.dumps(sizes, sort_keys=True))
    os.replace(temp, state_dir / SIZES_FILE)
