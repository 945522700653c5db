"""Gating outside the agent loop: generation 0, adopting a main moved by hand, any commit on request.

Before an agent runs on main, main must be a gated generation: with no generation yet, a main that
passed its gate is tagged `gen/0` (genesis); a main an operator moved by hand that passed is adopted
as the next generation. The gatekeeper runs the gate and records the outcome; this module names the
commits to gate (`gate_target`) and tags an adopted main (`adopt`).
"""

from __future__ import annotations

from dataclasses import dataclass

from supervisor.base.git_ops import GEN_TAG_PREFIX, ZERO, Git, GitError
from supervisor.gate.merge import MainLine, merge_lock, tag
from supervisor.store.decision_kinds import DecisionKind


@dataclass(frozen=True)
class Adopted:
    how: DecisionKind  # GENESIS (gen/0) or ADOPTED (a main moved by hand, tagged as the next generation)
    generation: int


def adopt(line: MainLine, main: str) -> Adopted:
    """Tag a main that passed its gate: gen/0 if there is no generation yet, else the next number."""
    first = not line.tags.all()
    with merge_lock(line.state_dir):
        if first:
            line.git.update_ref(f"{GEN_TAG_PREFIX}0", main, ZERO, "ouroboros: generation 0")
        generation = 0 if first else tag(line, main)
    return Adopted(DecisionKind.GENESIS if first else DecisionKind.ADOPTED, generation)


def gate_target(git: Git, rev: str, base: str | None) -> tuple[str, str | None]:
    """The commit `rev` names and the one `base` names (None without a base, or when both are one)."""
    commit = git.rev_parse(rev)
    if commit is None:
        raise GitError(f"{rev!r} names no commit in {git.git_dir}; check `git log`")
    base_commit = None
    if base is not None:
        base_commit = git.rev_parse(base)
        if base_commit is None:
            raise GitError(f"base {base!r} names no commit in {git.git_dir}")
    return commit, None if base_commit == commit else base_commit
