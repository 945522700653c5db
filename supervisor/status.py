"""status.json: what the running supervisor publishes and `supervisor status` reads."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from supervisor.gatekeeper import VerdictSummary


class Status(BaseModel):
    """One supervisor run's state; rewritten whenever it changes."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    state: str = "starting"
    pid: int = Field(default_factory=os.getpid)
    started_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    generation: int | None = None
    commit: str | None = None
    generation_since: datetime | None = None
    candidate: str | None = None
    agent_container: str | None = None
    probation: str = "n/a"
    restarts: int = 0
    verdicts: list[VerdictSummary] = Field(default_factory=list, description="The last five.")
    message: str = ""


class StatusFile:
    """Atomic writes, and only of changes: the loop ticks twice a second for weeks."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._written = ""

    def write(self, status: Status) -> None:
        text = status.model_dump_json(indent=1)
        if text == self._written:
            return
        temp = self.path.with_suffix(".tmp")
        temp.write_text(text)
        os.replace(temp, self.path)
        self._written = text

    def read(self) -> Status | None:
        """The last published status; None if the supervisor never ran (or the file is unreadable)."""
        try:
            return Status.model_validate_json(self.path.read_text())
        except (FileNotFoundError, ValidationError):
            return None
