"""The task work area: where the running task's project lives on the host, and what the agent is told.

HOME/task-work/projects/NAME   the work area, an export of the task's base commit (no .git), owned
                               by the container's user; the folder above is root's, so the agent
                               can write only inside NAME. Mounted at /projects in every agent run.
HOME/task-work/active.json     the supervisor's own note of the running attempt (never mounted)
HOME/run/task/task.json        the task as the agent reads it (read-only at /ouroboros/task)

The work area is made in a scratch folder and renamed into place, so a kill leaves either no area
or a whole one; scratch folders of a killed supervisor are removed at the next `prepare`.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from supervisor.base.git_ops import Git
from supervisor.base.remove_tree import remove_tree
from supervisor.gate.agent_container import PROJECTS, give_to_agent
from supervisor.store.tasks.models import Claim, Task

TASK_FILE = "task.json"
ACTIVE_FILE = "active.json"
log = logging.getLogger(__name__)


class ActiveAttempt(BaseModel):
    """What the supervisor remembers of the running attempt across its own restarts."""

    model_config = ConfigDict(extra="forbid")

    claim: Claim
    project: str
    tokens_at_start: int
    started_at: datetime
    refused: list[str] = Field(default_factory=list, description="What the snapshot refused, once it is taken.")


class TaskArea:
    def __init__(self, root: Path, task_dir: Path) -> None:
        self.root = root
        self.projects = root / "projects"
        self.task_dir = task_dir

    def prepare(self) -> None:
        """The mount points exist, owned by the supervisor; half-made areas of a killed run go."""
        for folder in (self.root, self.projects, self.task_dir):
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o755)
        for leftover in self.root.iterdir():
            if leftover.name.startswith(".new-"):
                remove_tree(leftover, log.warning)

    def path_for(self, project: str) -> Path:
        return self.projects / project

    def create(self, mirror: Path, project: str, commit: str) -> Path:
        """A fresh work area for `project` at `commit` (an older one of the same name goes first)."""
        target = self.path_for(project)
        scratch = self.root / f".new-{project}"
        remove_tree(scratch, log.warning)
        scratch.mkdir()
        Git(mirror).export_tree(commit, scratch)
        give_to_agent(scratch)
        self.remove(project)
        scratch.rename(target)
        return target

    def remove(self, project: str) -> None:
        remove_tree(self.path_for(project), log.warning)

    def is_whole(self, project: str) -> bool:
        """The project's work area is a real folder (a link or a file in its place is not followed)."""
        try:
            return stat.S_ISDIR(os.lstat(self.path_for(project)).st_mode)
        except FileNotFoundError:
            return False

    def remove_others(self, keep: str | None) -> None:
        """Every work area but `keep`'s goes: what a killed run left must not be shown to the next task."""
        for entry in self.projects.iterdir():
            if entry.name != keep:
                remove_tree(entry, log.warning)

    def publish(self, task: Task) -> None:
        """Tell the agent its task (atomically: it reads a whole file or none)."""
        body = {
            "id": task.id,
            "project": task.project,
            "title": task.title,
            "body": task.body,
            "path": f"{PROJECTS}/{task.project}",
        }
        _write_atomic(self.task_dir / TASK_FILE, json.dumps(body, indent=1))

    def withdraw(self) -> None:
        """The agent has no task (any more)."""
        (self.task_dir / TASK_FILE).unlink(missing_ok=True)

    def remember(self, active: ActiveAttempt) -> None:
        _write_atomic(self.root / ACTIVE_FILE, active.model_dump_json())

    def recall(self) -> ActiveAttempt | None:
        try:
            return ActiveAttempt.model_validate_json((self.root / ACTIVE_FILE).read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValidationError) as exc:
            log.warning("the note of the running task attempt is unreadable (%s); the queue decides", exc)
            return None

    def forget(self) -> None:
        (self.root / ACTIVE_FILE).unlink(missing_ok=True)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
