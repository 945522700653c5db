"""Gating outside the agent loop: generation 0, adopting a main moved by hand, any commit on request.

`genesis` makes sure main is a gated generation before an agent runs on it: with no generation
yet, main is gated and tagged `gen/0`; a main an operator moved by hand is gated and adopted as the
next generation, or refused. `gate_rev` runs the gate on any commit (`supervisor gate REV`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from supervisor.base.errors import OuroborosError
from supervisor.base.git_ops import GEN_TAG_PREFIX, ZERO, GitError
from supervisor.gate.config import GateConfig
from supervisor.gate.merge import merge_lock, tag
from supervisor.store.decision_kinds import DecisionKind
from supervisor.store.gate_results import GateResult

if TYPE_CHECKING:
    from supervisor.gate.gatekeeper import Gatekeeper


def ensure_gated_main(keeper: Gatekeeper) -> int:
    """Make sure main is a gated generation; returns its number."""
    main = keeper.main()
    known = keeper.generation_of(main)
    if known is not None:
        return known
    result = gate_commit(keeper, main)
    if not result.passed:
        raise OuroborosError(
            f"main {main[:12]} does not pass its own gate: {'; '.join(result.reasons)}; "
            f"fix main (or `supervisor rollback`) before starting the agent"
        )
    first = not keeper.generations()
    with merge_lock(keeper.state_dir):
        if first:
            keeper.git.update_ref(f"{GEN_TAG_PREFIX}0", main, ZERO, "ouroboros: generation 0")
        generation = 0 if first else tag(keeper, main)
    keeper.baselines.store(main, result.test_ids)
    keeper.log.append(
        DecisionKind.GENESIS if first else DecisionKind.ADOPTED, commit=main, main_after=main, generation=generation
    )
    return generation


def gate_commit(keeper: Gatekeeper, rev: str, base: str | None = None, config: GateConfig | None = None) -> GateResult:
    """Run the gate on any commit (with a base: also protected paths, no-shrink, base's own tests)."""
    commit = keeper.git.rev_parse(rev)
    if commit is None:
        raise GitError(f"{rev!r} names no commit in {keeper.common}; check `git log`")
    base_commit = None
    if base is not None:
        base_commit = keeper.git.rev_parse(base)
        if base_commit is None:
            raise GitError(f"base {base!r} names no commit in {keeper.common}")
    config = config or keeper.config(base_commit or commit)  # the fixed config if one was given, else the rev's
    if base_commit == commit:
        base_commit = None
    return keeper.runner.judge(commit, base_commit, config, keeper.baseline)
