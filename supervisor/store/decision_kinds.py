"""Every kind of record the decision log holds: one enum for every writer and every reader.

The members are `StrEnum`s, so a record on disk says `"kind": "accepted"` exactly as before and a
reader may compare a parsed record's `kind` (a plain string: a log can hold kinds an older or newer
supervisor wrote) with a member directly. Adding a kind: add a member here, then write it where the
decision is made; docs/console.md and docs/gate.md say which kinds the scorecard and notify read.
"""

from __future__ import annotations

from enum import StrEnum


class DecisionKind(StrEnum):
    # The lineage of main.
    GENESIS = "genesis"  # generation 0 passed the gate
    ADOPTED = "adopted"  # a main moved by hand was adopted as the next generation
    ROLLBACK = "rollback"  # main moved back to an earlier generation (automatic or by the operator)
    # Verdicts on a candidate (the candidate's final or waiting state, same words).
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    NEEDS_APPROVAL = "needs-approval"
    APPROVED = "approved"
    ABANDONED = "abandoned"
    INFRASTRUCTURE_ERROR = "infrastructure-error"
    # The fate of proposal files that were never judged.
    PROPOSAL_DROPPED = "proposal-dropped"
    PROPOSAL_REFUSED = "proposal-refused"
    # The agent's life under the event loop.
    AGENT_STARTED = "agent-started"
    AGENT_CRASHED = "agent-crashed"
    AGENT_STOPPED = "agent-stopped"  # a run's end that is not a crash: stopped by the supervisor, or done
    PROBATION_PASSED = "probation-passed"
    GAVE_UP = "gave-up"
    # Tasks on projects (docs/tasks.md).
    TASK_STARTED = "task-started"
    TASK_JUDGED = "task-judged"  # a verdict: passed, failed, gave-up or infrastructure
    TASK_RELEASED = "task-released"  # back to the queue unjudged (a stop, a lost work area)
    TASK_RESULT_REFUSED = "task-result-refused"  # a task-result message for a task the agent does not hold
    TASK_DELIVERED = "task-delivered"
    # What the supervisor refused or could not do for the agent.
    JOURNAL_REFUSED = "journal-refused"
    DISK_FULL = "disk-full"
    # Requests the LLM route refused or failed (`route-` + the route event's kind).
    ROUTE_BUDGET_WARNING = "route-budget_warning"
    ROUTE_BUDGET_REFUSED = "route-budget_refused"
    ROUTE_LIMIT_REFUSED = "route-limit_refused"
    ROUTE_AUTH_REFUSED = "route-auth_refused"
    ROUTE_UPSTREAM_ERROR = "route-upstream_error"
    ROUTE_LEDGER_FAILED = "route-ledger_failed"
    ROUTE_POLICY_REFUSED = "route-policy_refused"
    ROUTE_RESERVATION_EXCEEDED = "route-reservation_exceeded"
    ROUTE_FLEET_UNAVAILABLE = "route-fleet_unavailable"


ROUTE_PREFIX = "route-"

# The verdicts the scorecard counts per generation.
VERDICTS = frozenset({DecisionKind.ACCEPTED, DecisionKind.REJECTED, DecisionKind.NEEDS_APPROVAL})
# Records that make a commit a generation that passed the gate.
PASSED = frozenset({DecisionKind.ACCEPTED, DecisionKind.GENESIS, DecisionKind.ADOPTED})


def known(kind: str) -> DecisionKind | None:
    """The member a record's kind names; None for a kind this version does not write."""
    try:
        return DecisionKind(kind)
    except ValueError:
        return None


def route_kind(event_kind: str) -> DecisionKind:
    """The decision kind of an LLM route event (`budget_refused` -> `route-budget_refused`); a
    ValueError for an event kind this enum does not know (a bug: route events are a closed set)."""
    return DecisionKind(ROUTE_PREFIX + event_kind)
