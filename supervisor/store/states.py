"""Every state a candidate or the supervisor can be in, and the only transitions allowed between them.

This module imports nothing from the project (supervisord's `states.py` is the model): the states a
kill -9 can leave behind are exactly the members below, and `recover()` has one way forward from
each. Every change of a candidate's state goes through `check_candidate`; every change of the
supervisor's through `check_supervisor`. A transition missing from the tables is a bug in the
trusted code, never something the outside world can cause, so it raises `StateError`.
"""

from __future__ import annotations

from enum import Enum


class StateError(RuntimeError):
    """A transition that the tables below do not allow (a bug in the supervisor, not in its input)."""


class CandidateState(str, Enum):
    PENDING = "pending"  # a workspace the agent works in; no proposal yet
    COMMITTING = "committing"  # a proposal arrived: snapshot and commit the workspace
    GATING = "gating"  # the commit is being judged in a container
    MERGING = "merging"  # passed: compare-and-swap main to it
    NEEDS_APPROVAL = "needs-approval"  # passed, but changes existing tests: a person decides
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    ABANDONED = "abandoned"  # no proposal came, or main moved under it
    INFRASTRUCTURE_ERROR = "infrastructure-error"  # the engine failed it N times: not the candidate's fault

    def __str__(self) -> str:
        return self.value


FINAL = frozenset(
    {CandidateState.ACCEPTED, CandidateState.REJECTED, CandidateState.ABANDONED, CandidateState.INFRASTRUCTURE_ERROR}
)
# States `recover()` resumes by continuing the state machine (each step is idempotent).
IN_FLIGHT = frozenset({CandidateState.COMMITTING, CandidateState.GATING, CandidateState.MERGING})

_C = CandidateState
CANDIDATE_TRANSITIONS: dict[CandidateState, frozenset[CandidateState]] = {
    _C.PENDING: frozenset({_C.COMMITTING, _C.ABANDONED, _C.REJECTED}),
    _C.COMMITTING: frozenset({_C.GATING, _C.REJECTED}),
    _C.GATING: frozenset({_C.MERGING, _C.NEEDS_APPROVAL, _C.REJECTED, _C.INFRASTRUCTURE_ERROR}),
    # A merge whose main moved is rebased and gated again; an unusable gate result is gated again.
    _C.MERGING: frozenset({_C.ACCEPTED, _C.GATING, _C.REJECTED}),
    _C.NEEDS_APPROVAL: frozenset({_C.MERGING, _C.REJECTED}),
    _C.ACCEPTED: frozenset(),
    _C.REJECTED: frozenset(),
    _C.ABANDONED: frozenset(),
    _C.INFRASTRUCTURE_ERROR: frozenset(),
}


def check_candidate(old: CandidateState | str, new: CandidateState | str) -> CandidateState:
    """The new state, if the table allows old → new (staying put is always allowed)."""
    before, after = CandidateState(old), CandidateState(new)
    if before is not after and after not in CANDIDATE_TRANSITIONS[before]:
        raise StateError(f"candidate state {before.value} -> {after.value} is not allowed")
    return after


class SupervisorState(str, Enum):
    STARTING = "starting"  # lock taken, recovering what an earlier run left
    RUNNING = "running"  # the agent runs; proposals are gated as they come
    GATING = "gating"  # a proposal is being judged (the agent is stopped meanwhile)
    IDLE = "idle"  # the agent finished its cycles; waits for main to change
    WAITING_FOR_ENGINE = "waiting-for-engine"  # the container engine does not answer: backing off
    DISK_FULL = "paused: disk full"  # gating paused until there is room again
    STOPPING = "stopping"
    STOPPED = "stopped"

    def __str__(self) -> str:
        return self.value


_S = SupervisorState
_WORKING = frozenset({_S.RUNNING, _S.GATING, _S.IDLE, _S.WAITING_FOR_ENGINE, _S.DISK_FULL, _S.STOPPING})
SUPERVISOR_TRANSITIONS: dict[SupervisorState, frozenset[SupervisorState]] = {
    _S.STARTING: _WORKING,
    _S.RUNNING: _WORKING,
    _S.GATING: _WORKING,
    _S.IDLE: _WORKING,
    _S.WAITING_FOR_ENGINE: _WORKING | {_S.STARTING},  # an engine gone at start-up, back again
    _S.DISK_FULL: _WORKING,
    _S.STOPPING: frozenset({_S.STOPPED}),
    _S.STOPPED: frozenset(),
}


class ProbationState(str, Enum):
    """What status says of the current generation's probation (status.json's `probation`)."""

    NOT_APPLICABLE = "n/a"  # no agent is watched: not started yet, stopping, stopped
    ON_PROBATION = "on probation"  # a running supervisor watches it; it has not yet survived probation_s
    PASSED = "passed"  # it survived its probation (a fact that stays true once the supervisor stops)

    def __str__(self) -> str:
        return self.value


# The states of a supervisor that runs and watches the generation's probation. Not STARTING (nothing
# runs yet), STOPPING or STOPPED, and never a supervisor that holds no lock, whatever its file says.
PROBATION_WATCHED = frozenset({_S.RUNNING, _S.GATING, _S.IDLE, _S.WAITING_FOR_ENGINE, _S.DISK_FULL})


def shown_probation(state: SupervisorState, recorded: str, same_generation: bool) -> ProbationState:
    """What may be shown of probation in `state` (the state as observed: STOPPED when no supervisor
    holds the lock), given what the last run recorded about the generation it ran, and whether the
    generation shown is that one. Only a watched generation is "on probation"; "passed" stays true."""
    if recorded == ProbationState.PASSED.value and same_generation:
        return ProbationState.PASSED
    if recorded == ProbationState.ON_PROBATION.value and state in PROBATION_WATCHED and same_generation:
        return ProbationState.ON_PROBATION
    return ProbationState.NOT_APPLICABLE


def check_supervisor(old: SupervisorState | str, new: SupervisorState | str) -> SupervisorState:
    before, after = SupervisorState(old), SupervisorState(new)
    if before is not after and after not in SUPERVISOR_TRANSITIONS[before]:
        raise StateError(f"supervisor state {before.value} -> {after.value} is not allowed")
    return after


class MergeOutcome(str, Enum):
    """What one attempt to move main to a candidate did."""

    ACCEPTED = "accepted"
    REBASED = "rebased"  # main moved: the candidate was rebased and must be gated again
    RACED = "raced"  # main moved between the read and the compare-and-swap: try again
    REGATE = "regate"  # no passing gate result for this exact commit: gate it again
    REJECTED = "rejected"  # conflicts with main, or main already holds the change
