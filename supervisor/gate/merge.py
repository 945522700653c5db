"""The last step of a candidate that passed: compare-and-swap main onto exactly the gated commit.

If main moved meanwhile, the candidate is rebased onto it (a three-way merge of trees) and gated
again; a conflict, or a change main already holds, is a rejection. An accepted commit is tagged
`gen/N`, the next free number. The merge lock keeps one supervisor's swap and tag in order; the
compare-and-swap itself still guards against every other writer.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from supervisor.base.git_ops import GEN_TAG_PREFIX, MAIN_REF, ZERO, Git, RefMovedError
from supervisor.store.candidates import CandidateRecord
from supervisor.store.states import CandidateState, MergeOutcome

if TYPE_CHECKING:
    from supervisor.gate.gatekeeper import Gatekeeper


def merge(keeper: Gatekeeper, record: CandidateRecord) -> MergeOutcome:
    gate = record.gate
    if record.commit is None or gate is None or not gate.passed or gate.commit != record.commit:
        record.change_state(CandidateState.GATING)  # never merge a commit this record has no passing gate for
        keeper.store.save(record)
        return MergeOutcome.REGATE
    commit = record.commit
    with merge_lock(keeper.state_dir):
        main = keeper.main()
        base = keeper.git.parents(commit)[0]
        # A commit made on main (the usual case) is not in it; else a kill after the move may
        # have left it in main already (asked only then: the ancestry walk grows with the lineage).
        merged = base != main and (commit == main or keeper.git.is_ancestor(commit, main))
        if not merged:
            if base != main:
                return _rebase(keeper, record, base, main)
            try:
                keeper.git.update_ref(MAIN_REF, commit, main, f"ouroboros: accept {record.id}")
            except RefMovedError:
                return MergeOutcome.RACED  # main moved between our read and the swap: loop and rebase
        # A merge finished after a kill may find its commit tagged already, and no longer the newest
        # (an interrupted `supervisor approve`, then the running supervisor's next generation on top).
        known = keeper.generation_of(commit) if merged else None
        record.generation = known if known is not None else tag(keeper, commit)
    keeper.baselines.store(commit, gate.test_ids)
    keeper.finish(record, CandidateState.ACCEPTED, main_before=main)
    return MergeOutcome.ACCEPTED


def _rebase(keeper: Gatekeeper, record: CandidateRecord, old_base: str, main: str) -> MergeOutcome:
    git = keeper.git
    tree = git.merge_trees(old_base, main, record.commit or "", keeper.scratch)
    if tree is None:
        keeper.reject_record(record, [f"conflicts with main {main[:12]}, which moved since the candidate was made"])
        return MergeOutcome.REJECTED
    if tree == git.tree_of(main):
        keeper.reject_record(record, ["main already holds this change"])
        return MergeOutcome.REJECTED
    rebased = git.commit_tree(tree, [main], git.message(record.commit or ""))
    move_ref(git, record.branch, rebased)
    record.commit = rebased
    record.change_state(CandidateState.GATING)
    keeper.store.save(record)
    return MergeOutcome.REBASED


def tag(keeper: Gatekeeper, commit: str) -> int:
    """Tag `commit` as the next generation (or return its number if it is the newest); under the merge lock.

    A commit that becomes main is new (made on main, or rebased onto it), or it is the newest
    generation already: a kill fell between the tag and the record, and the next start finishes
    the merge. So only the highest tag is asked for; no listing of every generation is read."""
    number, newest = keeper.latest_generation()
    if newest == commit:
        return number
    number += 1
    while True:
        try:
            keeper.git.update_ref(f"{GEN_TAG_PREFIX}{number}", commit, ZERO, "ouroboros: generation")
            keeper.tags.remember(commit, number)
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
