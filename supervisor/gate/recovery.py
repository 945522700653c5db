"""After a crash: finish or redo each half-done candidate from its saved state, drop what is stale.

Every step of the gatekeeper's state machine is idempotent, so recovery is "continue": a torn log
tail is repaired, the agent's journal tails too, scratch and worktrees no live candidate owns are
removed, in-flight candidates are advanced to a verdict, and candidate branches with no record are
deleted. Reads only the live candidates (finished ones are archived), so a start costs the same
after ten candidates or ten thousand.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from supervisor.base.remove_tree import remove_tree
from supervisor.store.candidates import CANDIDATE_PREFIX
from supervisor.store.states import IN_FLIGHT, CandidateState

if TYPE_CHECKING:
    from supervisor.gate.gatekeeper import Gatekeeper


def recover_repository(keeper: Gatekeeper, abandon_pending: bool = True) -> list[str]:
    """Finish or redo half-done steps, drop stale worktrees and scratch; returns what was done."""
    actions: list[str] = []
    torn = keeper.log.repair()
    if torn:
        actions.append(torn)
    actions += keeper.journal.repair_tails()  # the agent is not running: its journal holds still
    remove_tree(keeper.scratch, keeper.warn)
    keeper.scratch.mkdir(parents=True, exist_ok=True)
    # Before any gate resumes: what a killed run left in the (capped) worktree area that belongs
    # to no active candidate, acceptance folders above all, would fill the area under that gate.
    active = {record.id for record in keeper.store.active()}
    actions += _remove_worktrees_except(keeper, active)
    live: set[str] = set()
    for record in keeper.store.active():
        if record.state == CandidateState.PENDING and abandon_pending:
            keeper.abandon(record.id, "the supervisor restarted before a proposal arrived")
            actions.append(f"abandoned {record.id}")
            continue
        if record.state in IN_FLIGHT:
            verdict = keeper.resume(record)
            actions.append(f"resumed {record.id}: {verdict.state}")
        if record.state == CandidateState.PENDING:
            live.add(record.id)
    actions += [f"unreadable candidate record {path}; move it aside" for path in keeper.store.corrupt]
    actions += _remove_worktrees_except(keeper, live)
    keeper.git.run("worktree", "prune", check=False)
    known = {r.id for r in keeper.store.active()}
    for ref, sha in keeper.git.refs(CANDIDATE_PREFIX.rstrip("/")).items():
        if ref.removeprefix(CANDIDATE_PREFIX) not in known:
            keeper.git.delete_ref(ref, sha)
            actions.append(f"deleted orphan branch {ref}")
    return actions


def _remove_worktrees_except(keeper: Gatekeeper, keep: set[str]) -> list[str]:
    actions: list[str] = []
    for path in keeper.worktrees.iterdir():
        if path.name not in keep:
            remove_tree(path, keeper.warn)
            actions.append(f"removed stale worktree {path.name}")
    return actions
