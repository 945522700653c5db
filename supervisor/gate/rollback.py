"""Moving main back to a commit that passed the gate: by hand (`supervisor rollback`) or by probation.

The rolled-back commits are kept under `refs/ouroboros/rolled-back/<generation>`; main moves by
compare-and-swap under the gatekeeper's merge lock. This module moves the refs and returns what it
did (`RollbackResult`); the gatekeeper logs and journals it.
"""

from __future__ import annotations

from supervisor.base.errors import OuroborosError
from supervisor.base.generation_number import GenerationNumberError, generation_named
from supervisor.base.git_ops import MAIN_REF, ZERO, Git
from supervisor.gate.generations import GenerationTags
from supervisor.gate.merge import MainLine, merge_lock
from supervisor.store.candidates import REJECTED_PREFIX
from supervisor.store.decision_kinds import PASSED
from supervisor.store.decision_log import DecisionLog
from supervisor.store.verdicts import RollbackResult

ROLLED_BACK_PREFIX = "refs/ouroboros/rolled-back/"


class RollbackError(OuroborosError, ValueError):
    """A rollback target is not a commit that passed the gate, or there is nothing to roll back to."""


def roll_back(line: MainLine, log: DecisionLog, to: str | None = None) -> RollbackResult:
    """Move main back to a commit that passed the gate (default: the previous generation)."""
    main = line.main()
    target = rollback_target(line, log, main, to)
    current_gen = line.tags.of(main)
    label = str(current_gen) if current_gen is not None else main[:12]
    with merge_lock(line.state_dir):
        kept = free_ref(line.git, ROLLED_BACK_PREFIX + label)
        line.git.update_ref(kept, main, ZERO, "ouroboros: keep rolled-back generation")
        line.git.update_ref(MAIN_REF, target, main, "ouroboros: rollback")
    return RollbackResult(previous=main, target=target, generation=line.tags.of(target), kept_as=kept)


def passed_commits(tags: GenerationTags, log: DecisionLog) -> set[str]:
    """Commits that passed the gate: generation tags plus accepted/genesis records of the log."""
    passed = set(tags.all().values())
    passed |= {r.commit for r in log.records() if r.kind in PASSED and r.commit}
    return passed


def rollback_target(line: MainLine, log: DecisionLog, main: str, to: str | None) -> str:
    gens = line.tags.all()
    if to is None:
        current = line.tags.of(main)
        older = [n for n, sha in gens.items() if sha != main and (current is None or n < current)]
        if not older:
            raise RollbackError("there is no earlier generation to roll back to; see `git tag -l 'gen/*'`")
        return gens[max(older)]
    try:
        number = generation_named(to)
    except GenerationNumberError as exc:
        raise RollbackError(f"{exc}; see `git tag -l 'gen/*'`") from exc
    named = gens.get(number) if number is not None else None
    target = named or line.git.rev_parse(to)  # digits that are no generation may name a commit
    if target is None:
        raise RollbackError(f"{to!r} is neither a generation number nor a commit; see `supervisor log`")
    if target == main:
        raise RollbackError(f"main is already at {target[:12]}; nothing to do")
    if target in set(line.git.refs(REJECTED_PREFIX.rstrip("/")).values()) and target not in gens.values():
        raise RollbackError(f"{target[:12]} was rejected by the gate; roll back only to a passed generation")
    if target not in passed_commits(line.tags, log):
        raise RollbackError(f"{target[:12]} never passed the gate; pick a generation from `git tag -l 'gen/*'`")
    return target


def free_ref(git: Git, ref: str) -> str:
    suffix, candidate = 1, ref
    while git.ref_value(candidate) is not None:
        suffix += 1
        candidate = f"{ref}-{suffix}"
    return candidate
