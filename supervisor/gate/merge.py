"""The last step of a candidate that passed: compare-and-swap main onto exactly the gated commit.

If main moved meanwhile, the candidate is rebased onto it (a three-way merge of trees) and gated
again; a conflict, or a change main already holds, is a rejection. An accepted commit is tagged
`gen/N`, the next free number. The merge lock keeps one supervisor's swap and tag in order; the
compare-and-swap itself still guards against every other writer.

This module moves refs only; it returns what happened (`MergeStep`) and the gatekeeper records it.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from supervisor.base.git_ops import GEN_TAG_PREFIX, MAIN_REF, ZERO, Git, GitError, RefMovedError
from supervisor.gate.generations import GenerationTags
from supervisor.store.candidates import CandidateRecord
from supervisor.store.states import MergeOutcome


@dataclass(frozen=True)
class MainLine:
    """What moves main and names generations: the repository, its tags, the merge lock's folder."""

    git: Git
    tags: GenerationTags
    state_dir: Path

    def main(self) -> str:
        main = self.git.ref_value(MAIN_REF)
        if main is None:
            raise GitError(f"{self.git.git_dir} has no main branch; create it first (supervisor init)")
        return main


@dataclass(frozen=True)
class MergeStep:
    """One merge attempt: ACCEPTED (main moved, `generation` tagged), REBASED (`commit` to gate again),
    REJECTED (`reason`), RACED (main moved under the swap: try again) or REGATE (no passing gate)."""

    outcome: MergeOutcome
    main_before: str | None = None
    generation: int | None = None
    commit: str | None = None
    reason: str | None = None


def merge(line: MainLine, record: CandidateRecord, scratch: Path) -> MergeStep:
    """Move main to the record's gated commit, or say why not; changes no record."""
    gate = record.gate
    if record.commit is None or gate is None or not gate.passed or gate.commit != record.commit:
        return MergeStep(MergeOutcome.REGATE)  # never merge a commit this record has no passing gate for
    commit = record.commit
    with merge_lock(line.state_dir):
        main = line.main()
        base = line.git.parents(commit)[0]
        # A commit made on main (the usual case) is not in it; else a kill after the move may
        # have left it in main already (asked only then: the ancestry walk grows with the lineage).
        merged = base != main and (commit == main or line.git.is_ancestor(commit, main))
        if not merged:
            if base != main:
                return _rebase(line.git, record, base, main, scratch)
            try:
                line.git.update_ref(MAIN_REF, commit, main, f"ouroboros: accept {record.id}")
            except RefMovedError:
                return MergeStep(MergeOutcome.RACED)  # main moved between our read and the swap: loop and rebase
        # A merge finished after a kill may find its commit tagged already, and no longer the newest
        # (an interrupted `supervisor approve`, then the running supervisor's next generation on top).
        known = line.tags.of(commit) if merged else None
        generation = known if known is not None else tag(line, commit)
    return MergeStep(MergeOutcome.ACCEPTED, main_before=main, generation=generation, commit=commit)


def _rebase(git: Git, record: CandidateRecord, old_base: str, main: str, scratch: Path) -> MergeStep:
    tree = git.merge_trees(old_base, main, record.commit or "", scratch)
    if tree is None:
        reason = f"conflicts with main {main[:12]}, which moved since the candidate was made"
        return MergeStep(MergeOutcome.REJECTED, reason=reason)
    if tree == git.tree_of(main):
        return MergeStep(MergeOutcome.REJECTED, reason="main already holds this change")
    rebased = git.commit_tree(tree, [main], git.message(record.commit or ""))
    move_ref(git, record.branch, rebased)
    return MergeStep(MergeOutcome.REBASED, commit=rebased)


def tag(line: MainLine, commit: str) -> int:
    """Tag `commit` as the next generation (or return its number if it is the newest); under the merge lock.

    A commit that becomes main is new (made on main, or rebased onto it), or it is the newest
    generation already: a kill fell between the tag and the record, and the next start finishes
    the merge. So only the highest tag is asked for; no listing of every generation is read."""
    number, newest = line.tags.latest()
    if newest == commit:
        return number
    number += 1
    while True:
        try:
            line.git.update_ref(f"{GEN_TAG_PREFIX}{number}", commit, ZERO, "ouroboros: generation")
            line.tags.remember(commit, number)
            return number
        except RefMovedError:
            number += 1


def move_ref(git: Git, ref: str, new: str) -> None:
    current = git.ref_value(ref)
    if current != new:
        git.update_ref(ref, new, current or ZERO)


@contextmanager
def merge_lock(state_dir: Path) -> Iterator[None]:
    """Keeps CAS + tag of one supervisor in order; the CAS itself still guards against outsiders."""
    with open(state_dir / "merge.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
