"""The task the supervisor gave this run, and the v2 `task-result` message that says it is done.

The supervisor writes the task (read-only for us) at OUROBOROS_TASK_FILE and mounts the project's
work area writable at the task's `path` (e.g. /projects/NAME). While a task is given, it is the
goal of every cycle until the agent reports it done; the supervisor then judges the work area with
the project's own tests (and tests we never see). The message asks for judging, nothing more.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.goals import Goal
from agent.proposal import drop_message

MAX_TASK_FILE = 1_000_000


class AssignedTask(BaseModel):
    """What the supervisor tells the agent about its task (never the hidden tests)."""

    model_config = ConfigDict(extra="ignore")

    id: int = Field(ge=1)
    project: str
    title: str
    body: str = ""
    path: str = Field(description="Where the project's work area is mounted, writable.")

    def goal(self) -> Goal:
        body = (
            f"{self.body.strip() or '(no details)'}\n\n"
            f"The project {self.project} is at {self.path}; while you execute this goal your tools work "
            "there (paths are relative to it, run_command runs in it). Change the project's code so the "
            "problem is fixed; its own tests (and tests you do not see) judge the result. When the work is "
            "done, end with GOAL STATUS: complete and a short summary for the pull request."
        )
        return Goal(title=f"Task {self.id}: {self.title}", body=body)


class TaskResult(BaseModel):
    """v2: the task is done, please judge it (see docs/protocol.md)."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[2] = 2
    kind: Literal["task-result"] = "task-result"
    id: str = Field(default_factory=lambda: uuid.uuid4().hex, pattern=r"^[0-9a-f]{32}$")
    task: int = Field(ge=1)
    summary: str = Field(min_length=1, max_length=20_000)
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


def read_task(path: Path | None) -> AssignedTask | None:
    """The task given to this run, or None (no task file, or none right now)."""
    if path is None:
        return None
    try:
        with path.open("rb") as f:
            data = f.read(MAX_TASK_FILE)
        return AssignedTask.model_validate(json.loads(data))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, ValidationError):
        return None  # half-written or foreign: no task this cycle


def write_task_result(outbox: Path, task_id: int, summary: str) -> TaskResult:
    """Drop the message atomically (temp file in the outbox, then rename)."""
    message = TaskResult(task=task_id, summary=(summary.strip() or "(no summary)")[:20_000])
    drop_message(outbox, f"task-result-{message.id}.json", message.model_dump_json())
    return message
