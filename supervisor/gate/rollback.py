"""Moving main back to a commit that passed the gate: by hand (`supervisor rollback`) or by probation.

The rolled-back commits are kept under `refs/ouroboros/rolled-back/<generation>`; main moves by
compare-and-swap under the gatekeeper's merge lock, and the move is logged and journaled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from supervisor.base.errors import OuroborosError
from supervisor.base.git_ops import MAIN_REF, ZERO, Git
from supervisor.gate.merge import merge_lock
from supervisor.store.candidates import REJECTED_PREFIX
from supervisor.store.decision_kinds import PASSED, DecisionKind
from supervisor.store.verdicts import RollbackResult

if TYPE_CHECKING:
    from supervisor.gate.gatekeeper import Gatekeeper

ROLLED_BACK_PREFIX = "refs/ouroboros/rolled-back/"


class RollbackError(OuroborosError, ValueError):
    """A rollback target is not a commit that passed the gate, or there is nothing to roll back to."""


def roll_back(keeper: Gatekeeper, to: str | None = None) -> RollbackResult:
    """Move main back to a commit that passed the gate (default: the previous generation)."""
    main = keeper.main()
    target = rollback_target(keeper, main, to)
    current_gen = keeper.generation_of(main)
    label = str(current_gen) if current_gen is not None else main[:12]
    with merge_lock(keeper.state_dir):
        kept = free_ref(keeper.git, ROLLED_BACK_PREFIX + label)
        keeper.git.update_ref(kept, main, ZERO, "ouroboros: keep rolled-back generation")
        keeper.git.update_ref(MAIN_REF, target, main, "ouroboros: rollback")
    generation = keeper.generation_of(target)
    keeper.log.append(
        DecisionKind.ROLLBACK,
        commit=target,
        main_before=main,
        main_after=target,
        generation=generation,
        details={"kept_as": kept},
    )
    keeper.note(
        "rollback",
        f"main rolled back from {main} (generation {current_gen}) to {target} "
        f"(generation {generation}). The rolled-back commits stay at {kept}.",
    )
    return RollbackResult(previous=main, target=target, generation=generation, kept_as=kept)


def passed_commits(keeper: Gatekeeper) -> set[str]:
    """Commits that passed the gate: generation tags plus accepted/genesis records of the log."""
    passed = set(keeper.generations().values())
    passed |= {r.commit for r in keeper.log.records() if r.kind in PASSED and r.commit}
    return passed


def rollback_target(keeper: Gatekeeper, main: str, to: str | None) -> str:
    gens = keeper.generations()
    if to is None:
        current = keeper.generation_of(main)
        older = [n for n, sha in gens.items() if sha != main and (current is None or n < current)]
        if not older:
            raise RollbackError("there is no earlier generation to roll back to; see `git tag -l 'gen/*'`")
        return gens[max(older)]
    text = to.removeprefix("gen/")
    target = gens.get(int(text)) if text.isdigit() and int(text) in gens else keeper.git.rev_parse(to)
    if target is None:
        raise RollbackError(f"{to!r} is neither a generation number nor a commit; see `supervisor log`")
    if target == main:
        raise RollbackError(f"main is already at {target[:12]}; nothing to do")
    if target in set(keeper.git.refs(REJECTED_PREFIX.rstrip("/")).values()) and target not in gens.values():
        raise RollbackError(f"{target[:12]} was rejected by the gate; roll back only to a passed generation")
    if target not in passed_commits(keeper):
        raise RollbackError(f"{target[:12]} never passed the gate; pick a generation from `git tag -l 'gen/*'`")
    return target


def free_ref(git: Git, ref: str) -> str:
    suffix, candidate = 1, ref
    while git.ref_value(candidate) is not None:
        suffix += 1
        candidate = f"{ref}-{suffix}"
    return candidate
