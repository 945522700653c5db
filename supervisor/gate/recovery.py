"""After a crash: what to do with each half-done candidate, and what stale leftovers to remove.

Every step of the gatekeeper's state machine is idempotent, so recovery is "continue": a torn log
tail is repaired, the agent's journal tails too, scratch and worktrees no live candidate owns are
removed, in-flight candidates are advanced to a verdict, and candidate branches with no record are
deleted. Reads only the live candidates (finished ones are archived), so a start costs the same
after ten candidates or ten thousand.

This module decides (`triage`) and clears files and refs; the gatekeeper, which owns the
candidates' states, abandons or resumes each one as told.
"""

from __future__ import annotations

import logging
from enum import Enum
from pathlib import Path

from supervisor.base.git_ops import Git
from supervisor.base.remove_tree import remove_tree
from supervisor.store.candidates import CANDIDATE_PREFIX
from supervisor.store.decision_log import DecisionLog
from supervisor.store.journal_writer import JournalWriter
from supervisor.store.states import IN_FLIGHT, CandidateState

log = logging.getLogger(__name__)


class Recovery(Enum):
    """What recovery does with one active candidate."""

    ABANDON = "abandon"  # pending, and no proposal can come for it any more
    RESUME = "resume"  # in flight: continue it to a verdict
    KEEP = "keep"  # pending, and its agent may still propose (or waiting for approval)


def triage(state: CandidateState, abandon_pending: bool) -> Recovery:
    if state == CandidateState.PENDING:
        return Recovery.ABANDON if abandon_pending else Recovery.KEEP
    return Recovery.RESUME if state in IN_FLIGHT else Recovery.KEEP


def repair_records(decisions: DecisionLog, journal: JournalWriter) -> list[str]:
    """Cut a torn tail off the decision log and the agent's journal files; returns what was done."""
    actions: list[str] = []
    torn = decisions.repair()
    if torn:
        actions.append(torn)
    return actions + journal.repair_tails()  # the agent is not running: its journal holds still


def clear_scratch(scratch: Path) -> None:
    remove_tree(scratch, _warn)
    scratch.mkdir(parents=True, exist_ok=True)


def remove_worktrees_except(worktrees: Path, keep: set[str]) -> list[str]:
    actions: list[str] = []
    for path in worktrees.iterdir():
        if path.name not in keep:
            remove_tree(path, _warn)
            actions.append(f"removed stale worktree {path.name}")
    return actions


def delete_orphan_branches(git: Git, known: set[str]) -> list[str]:
    """Candidate branches whose record is gone (a kill between the branch and the record)."""
    git.run("worktree", "prune", check=False)
    actions: list[str] = []
    for ref, sha in git.refs(CANDIDATE_PREFIX.rstrip("/")).items():
        if ref.removeprefix(CANDIDATE_PREFIX) not in known:
            git.delete_ref(ref, sha)
            actions.append(f"deleted orphan branch {ref}")
    return actions


def _warn(message: str) -> None:
    log.warning("%s", message)
