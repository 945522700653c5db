"""A task's work area, committed on its task branch: the same race-free snapshot as a candidate's.

The work area is a plain folder the agent wrote (no `.git` of its own; a `.git` in it is refused
like a nested repository). `supervisor/gate/workspace_commit.py` walks it without following a
link and copies it into a staging folder inside the mirror (only the supervisor writes there),
refusing links that leave the tree, FIFOs, devices, sockets, oversized trees and nested `.git`.
Git then commits that copy on the task's base commit through a private index file, and the task
branch is moved to it with a compare-and-swap.

What was refused is written into the commit message as trailers (one JSON string a line, so a file
name cannot forge or hide a line), so the judge finds it in git however long after, and after a
kill: `refusals_of(git, commit)`.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from supervisor.base.git_ops import ZERO, Git, GitError, RefMovedError
from supervisor.gate.config import GateConfig
from supervisor.gate.workspace_commit import commit_staging, take_snapshot

REFUSED_TRAILER = "Ouroboros-Refused: "
STAGING = "ouroboros-staging"  # inside the mirror: a folder only the supervisor writes
MAX_TRAILERS = 60


class WorkCommit(BaseModel):
    """What `commit_work_area` made: the commit on the task branch and what the snapshot refused."""

    model_config = ConfigDict(extra="forbid")

    commit: str
    refused: list[str] = Field(default_factory=list)
    files: int = 0
    bytes: int = 0


def commit_work_area(
    mirror: Path,
    work_area: Path,
    *,
    base_commit: str,
    branch: str,
    message: str,
    max_files: int,
    max_mb: int,
) -> WorkCommit:
    """Snapshot `work_area`, commit it on `base_commit` in `mirror`, point `refs/ouroboros/tasks/<branch>` at it.

    Idempotent: called again (after a kill, say) it commits the same tree again, and the branch is
    left alone when it already holds an equivalent commit (same tree, same parent, same message).
    """
    git = Git(mirror)
    ref = branch_ref(git, branch)
    if git.rev_parse(base_commit) != base_commit:
        raise GitError(f"base commit {base_commit[:12]} is not in the mirror {mirror}; fetch the project")
    config = GateConfig(max_files=max_files, max_snapshot_mb=max_mb, memory_paths=[])
    scratch = git.git_dir / STAGING
    staging = scratch / ref.replace("/", "-")
    scratch.mkdir(exist_ok=True)
    shutil.rmtree(staging, ignore_errors=True)
    try:
        snapshot = take_snapshot(work_area, staging, config, None, "the task work area")
        full_message = with_refusals(message, snapshot.refused)
        commit = commit_staging(git, base_commit, staging, snapshot, scratch, config, full_message)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    commit = _move_branch(git, ref, commit)
    return WorkCommit(commit=commit, refused=snapshot.refused, files=snapshot.files, bytes=snapshot.bytes)


TASK_REFS = "refs/ouroboros/tasks/"  # never under refs/heads or refs/tags: a fetch owns (and prunes) those


def branch_ref(git: Git, branch: str) -> str:
    """`refs/ouroboros/tasks/<branch>`, refused unless git accepts it as a ref name."""
    ref = f"{TASK_REFS}{branch}"
    if branch.startswith("-") or git.run("check-ref-format", ref, check=False).returncode != 0:
        raise GitError(f"{branch!r} is not a valid branch name")
    return ref


def _move_branch(git: Git, ref: str, commit: str) -> str:
    """Point `ref` at `commit`, or keep an equivalent commit it already holds (a second call)."""
    old = git.ref_value(ref)
    if old is not None and _equivalent(git, old, commit):
        return old
    try:
        git.update_ref(ref, commit, old or ZERO, reason="ouroboros: task work area")
    except RefMovedError:  # a racing call of ours moved it: keep its commit if it is the same work
        now = git.ref_value(ref)
        if now is None or not _equivalent(git, now, commit):
            raise
        return now
    return commit


def _equivalent(git: Git, one: str, other: str) -> bool:
    if git.rev_parse(one) is None:
        return False
    same_tree = git.tree_of(one) == git.tree_of(other)
    return same_tree and git.parents(one) == git.parents(other) and git.message(one) == git.message(other)


def with_refusals(message: str, refused: list[str]) -> str:
    """The commit message with one trailer per refusal, each a JSON string (no line can be forged)."""
    if not refused:
        return message
    lines = [REFUSED_TRAILER + json.dumps(entry) for entry in refused[:MAX_TRAILERS]]
    return message.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n"


_TRAILER = re.compile(r"^" + re.escape(REFUSED_TRAILER) + r"(\".*\")$")


def refusals_of(git: Git, commit: str) -> list[str]:
    """The refusals `commit_work_area` wrote into `commit`'s message (none for any other commit)."""
    found = []
    for line in git.message(commit).splitlines():
        match = _TRAILER.match(line)
        if match is None:
            continue
        try:
            entry = json.loads(match.group(1))
        except ValueError:
            entry = line[len(REFUSED_TRAILER) :]
        found.append(str(entry))
    return found[:MAX_TRAILERS]
