"""What the event loop reacts to (events) and what it is asked to do (decisions), as small frozen types.

Threads (the agent's waiter, the outbox watcher, signals, the clock) only put an event on the loop's
queue; the proposal flow and the agent's lifecycle only return a decision. The event loop
(supervisor/loop/event_loop.py, `Supervisor.apply`) is the one place that applies a decision: it
alone starts, restarts, rolls back or idles the agent and changes the supervisor's state.
"""

from __future__ import annotations

from dataclasses import dataclass

from supervisor.base.errors import OuroborosError
from supervisor.gate.agent_container import AgentRun

# -- events ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProposalArrived:
    """The outbox changed (at most one is queued at a time: each looks at the whole outbox)."""


@dataclass(frozen=True)
class AgentExited:
    """The agent's run `run_id` ended; `exit_code` None means the engine went away."""

    run_id: str
    exit_code: int | None


@dataclass(frozen=True)
class StopRequested:
    """SIGTERM, SIGINT or `supervisor stop`."""


@dataclass(frozen=True)
class Tick:
    """The clock; `poll` also looks at the outbox (a safety net under the outbox watcher)."""

    poll: bool = False


Event = ProposalArrived | AgentExited | StopRequested | Tick

# -- decisions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Continue:
    """Nothing to change."""


@dataclass(frozen=True)
class Start:
    """Start the agent if none runs and no stop was asked for (at start-up, when disk space is back)."""

    reason: str


@dataclass(frozen=True)
class Restart:
    """Stop the agent and start it on main after `delay_s`; `since` is when the decision was made (a
    verdict), for the restart latency; `keep_probation` keeps the generation's crash count."""

    reason: str
    keep_probation: bool = False
    delay_s: float = 0.0
    since: float | None = None


@dataclass(frozen=True)
class Adopt:
    """The agent's run survived an engine restart: watch it again instead of restarting it."""

    run: AgentRun


@dataclass(frozen=True)
class RollBack:
    """Generation `generation` crash-loops on probation: roll main back and restart on it."""

    generation: int | None


@dataclass(frozen=True)
class Idle:
    """The agent finished its cycles: it stays stopped until main changes."""


@dataclass(frozen=True)
class PauseForDisk:
    """The disk is full: pause gating (status says so) until a retry finds room."""

    error: OSError


@dataclass(frozen=True)
class GiveUp:
    """Too many automatic rollbacks in a row, or none possible: a person has to look."""

    reason: str


Decision = Continue | Start | Restart | Adopt | RollBack | Idle | PauseForDisk | GiveUp


class GaveUpError(OuroborosError, RuntimeError):
    """Too many automatic rollbacks in a row: a person has to look."""
