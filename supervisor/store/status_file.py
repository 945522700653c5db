"""status.json: what the running supervisor publishes and `supervisor status` reads."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from supervisor.base.appendfile import DiskFullError, write_atomic
from supervisor.base.safe_fs import Access, open_regular
from supervisor.store.states import ProbationState, SupervisorState, check_supervisor, shown_probation
from supervisor.store.verdicts import VerdictSummary

PAD_BLOCK = 4096


class Status(BaseModel):
    """One supervisor run's state; rewritten whenever it changes."""

    # Values (ids, hashes, times) are unique per record: pydantic-core's JSON string cache would keep
    # up to 16,384 of them alive, RSS growing per verdict for hours (bench/soak.py). Keys only.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, cache_strings="keys")

    state: SupervisorState = SupervisorState.STARTING
    pid: int = Field(default_factory=os.getpid)
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    generation: int | None = None
    commit: str | None = None
    generation_since: datetime | None = None
    candidate: str | None = None
    agent_container: str | None = None
    probation: str = "n/a"
    restarts: int = 0
    route_refusals: dict[str, int] = Field(
        default_factory=dict,
        description="Requests the LLM route answered itself instead of forwarding, by "
        "error type (e.g. rate_limit_error, authentication_error), since this supervisor started.",
    )
    verdicts: list[VerdictSummary] = Field(default_factory=list, description="The last five.")
    message: str = ""

    def change_state(self, new: SupervisorState, message: str | None = None) -> None:
        """The one way the supervisor's state changes: checked against `states.SUPERVISOR_TRANSITIONS`."""
        self.state = check_supervisor(self.state, new)
        if message is not None:
            self.message = message


class Shown(BaseModel):
    """What a reader may show of a supervisor: derived from its recorded state and whether it runs."""

    model_config = ConfigDict(extra="forbid")

    running: bool
    state: str  # a SupervisorState's value, or NEVER_STARTED
    probation: str  # a ProbationState's value


NEVER_STARTED = "never started"


def shown(status: Status | None, running: bool, generation: int | None) -> Shown:
    """The state and probation to show of `generation` (the recorded one while a supervisor runs,
    main's once none does). `running`: a supervisor holds the instance's lock; a file that says
    "running" outlives a kill -9. A stopped instance is "stopped" and never "on probation";
    "passed" is said only of the generation that passed."""
    if status is None:
        return Shown(running=running, state=NEVER_STARTED, probation=ProbationState.NOT_APPLICABLE.value)
    state = status.state if running else SupervisorState.STOPPED
    probation = shown_probation(state, status.probation, same_generation=generation == status.generation)
    return Shown(running=running, state=state.value, probation=probation.value)


class StatusFile:
    """Atomic writes, and only of changes: the loop ticks twice a second for weeks."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._written = ""

    def write(self, status: Status) -> bool:
        """Publish `status`; False if it could not be written: status is never worth a crash.

        The file is padded to whole blocks, so when the disk is full (when status matters most: it
        must say "paused: disk full") it is overwritten in place, which needs no new space.
        """
        text = status.model_dump_json(indent=1)
        if text == self._written:
            return True
        data = _padded(text)
        try:
            write_atomic(self.path, data)
        except DiskFullError:
            if not self._overwrite_in_place(data):
                return False
        except OSError:
            return False
        self._written = text
        return True

    def _overwrite_in_place(self, data: bytes) -> bool:
        try:
            fd = open_regular(self.path, Access.WRITE)
        except OSError:
            return False
        try:
            if os.fstat(fd).st_size < len(data):
                return False
            os.pwrite(fd, data.ljust(os.fstat(fd).st_size), 0)
        except OSError:
            return False
        finally:
            os.close(fd)
        return True

    def read(self) -> Status | None:
        """The last published status; None if the supervisor never ran (or the file is unreadable)."""
        try:
            return Status.model_validate_json(self.path.read_text())
        except (FileNotFoundError, ValidationError):
            return None


def _padded(text: str) -> bytes:
    data = text.encode() + b"\n"
    return data.ljust(-(-len(data) // PAD_BLOCK) * PAD_BLOCK)
