"""The task work area: where the running task's project lives on the host, and what the agent is told.

HOME/task-work/projects/NAME   the work area, an export of the task's base commit (no .git), owned
                               by the container's user; the folder above is root's, so the agent
                               can write only inside NAME. Mounted at /projects in every agent run.
HOME/task-work/active.json     the supervisor's own note of the running attempt (never mounted)
HOME/run/task/task.json        the task as the agent reads it (read-only at /ouroboros/task)

HOME/task-work/.ready-NAME-COMMIT/{area,ready.json}
                               the work area of the task claimed next, made ahead (`prepare_ahead`)
                               while the agent works; the folder is the supervisor's alone (0700),
                               never mounted; `ready.json` is written last
HOME/task-work/.new-*, .making-*, .gone-*
                               scratch of an area being made, an area set aside to be removed

A work area is made in a scratch folder and renamed into place, so a kill leaves either no area
or a whole one. Exporting a commit is O(files) (50,000 files: seconds), so the task flow makes the
queue head's area ahead on its tick, and `create` then only renames it into place: the agent's
wait between two tasks no longer grows with the project (bench/task_setup.py). A ready area is used
only if its mark names the same project and commit and its folder is the one that was made (same
inode, unchanged since: nothing was added, removed or swapped at its top); anything else is
removed and the export made at the claim. At most one ready area is kept (the head's); scratch
folders of a killed supervisor and set-aside areas are removed at the next `prepare` or tick.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
import uuid
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from supervisor.base.git_ops import Git, GitError
from supervisor.base.remove_tree import remove_tree
from supervisor.base.safe_fs import read_file
from supervisor.gate.agent_container import PROJECTS, give_to_agent
from supervisor.store.tasks.models import Claim, Task

TASK_FILE = "task.json"
ACTIVE_FILE = "active.json"
READY_PREFIX = ".ready-"  # + NAME-COMMIT: a whole area made ahead
MAKING_PREFIX = ".making-"  # an area being made ahead
SCRATCH_PREFIX = ".new-"  # an area being made at a claim
GONE_PREFIX = ".gone-"  # an area set aside, removed on the next tick
READY_MARK = "ready.json"
READY_AREA = "area"
RETRY_AHEAD_S = 600.0  # a head whose area could not be made ahead is tried again after this
log = logging.getLogger(__name__)


class ActiveAttempt(BaseModel):
    """What the supervisor remembers of the running attempt across its own restarts."""

    model_config = ConfigDict(extra="forbid")

    claim: Claim
    project: str
    tokens_at_start: int
    started_at: datetime
    refused: list[str] = Field(default_factory=list, description="What the snapshot refused, once it is taken.")


class ReadyMark(BaseModel):
    """What a ready area holds, written last: the area is used only if all of it still holds."""

    model_config = ConfigDict(extra="forbid")

    project: str
    commit: str
    files: int
    folder: tuple[int, int, int] = Field(description="The area folder's device, inode and ctime when it was done.")


class TaskArea:
    def __init__(self, root: Path, task_dir: Path) -> None:
        self.root = root
        self.projects = root / "projects"
        self.task_dir = task_dir
        self._unmade: tuple[str, str, float] | None = None  # (project, commit, when) `ahead` could not make

    def prepare(self) -> None:
        """The mount points exist, owned by the supervisor; half-made and set-aside areas of a killed run go."""
        for folder in (self.root, self.projects, self.task_dir):
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o755)
        self._tidy(keep_ready=True)

    def path_for(self, project: str) -> Path:
        return self.projects / project

    def create(self, mirror: Path, project: str, commit: str) -> Path:
        """The work area for `project` at `commit` (an older one of the same name goes first): the one
        made ahead if it matches (a rename), else an export of the commit."""
        target = self.path_for(project)
        holder = self.ready(project, commit)
        made = holder / READY_AREA if holder is not None else self._export(mirror, project, commit)
        self.remove(project)
        made.rename(target)
        if holder is not None:
            remove_tree(holder, log.warning)  # only its mark is left
        return target

    def _export(self, mirror: Path, project: str, commit: str) -> Path:
        scratch = self.root / f"{SCRATCH_PREFIX}{project}"
        remove_tree(scratch, log.warning)
        try:
            scratch.mkdir()
            Git(mirror).export_tree(commit, scratch)
            give_to_agent(scratch)
        except BaseException:
            remove_tree(scratch, log.warning)
            raise
        return scratch

    def remove(self, project: str) -> None:
        """The area goes from the agent's view at once (a rename); its files go on the next tick."""
        path = self.path_for(project)
        if not os.path.lexists(path):
            return
        try:
            os.rename(path, self.root / f"{GONE_PREFIX}{project}-{uuid.uuid4().hex[:12]}")
        except OSError as exc:
            log.warning("could not set %s aside (%s); removing it now", path, exc)
            remove_tree(path, log.warning)

    # -- made ahead -------------------------------------------------------------------------------

    def prepare_ahead(self, mirror: Path, project: str, commit: str) -> bool:
        """Make the work area of `project` at `commit` where the agent cannot see it, for the next claim.

        True if it was made now, False if a whole one was there already. Every other ready area, and
        every scratch or set-aside folder, is removed first: the disk holds at most one ready area.
        A kill leaves either a whole ready area or a `.making-` folder that the next call removes.
        """
        name = f"{READY_PREFIX}{project}-{commit}"
        if self.ready(project, commit) is not None:
            self._tidy(keep_ready=False, keep=name)
            return False
        self._tidy(keep_ready=False)
        scratch = self.root / f"{MAKING_PREFIX}{project}-{commit}"
        try:
            scratch.mkdir(mode=0o700)
            scratch.chmod(0o700)  # the agent's user may own the area inside, but cannot reach it
            area = scratch / READY_AREA
            area.mkdir()
            files = Git(mirror).export_tree(commit, area)
            give_to_agent(area)
            mark = ReadyMark(project=project, commit=commit, files=files, folder=_identity(area))
            _write_atomic(scratch / READY_MARK, mark.model_dump_json())
            os.rename(scratch, self.root / name)
        except BaseException:
            remove_tree(scratch, log.warning)
            raise
        return True

    def ahead(self, mirror: Path, project: str, commit: str) -> None:
        """`prepare_ahead` on the loop's tick; never raises. An area that cannot be made is not tried
        again for RETRY_AHEAD_S (the claim then exports it and records why it fails)."""
        failed = self._unmade
        if failed and failed[:2] == (project, commit) and time.monotonic() - failed[2] < RETRY_AHEAD_S:
            return
        try:
            if self.prepare_ahead(mirror, project, commit):
                log.info("the work area of %s at %s is ready for the next task", project, commit[:12])
        except (GitError, OSError) as exc:
            self._unmade = (project, commit, time.monotonic())
            log.warning("the work area of %s at %s could not be made ahead: %s", project, commit[:12], exc)

    def ready(self, project: str, commit: str) -> Path | None:
        """The folder holding the whole, unchanged area made ahead for `project` at `commit`, or None
        (a half-made, stale or altered one is removed)."""
        holder = self.root / f"{READY_PREFIX}{project}-{commit}"
        if not os.path.lexists(holder):
            return None
        why = _unusable(holder, project, commit)
        if why is None:
            return holder
        log.warning("the work area made ahead in %s is not used: %s", holder.name, why)
        remove_tree(holder, log.warning)
        return None

    def tidy(self) -> None:
        """Remove every ready area (nothing is queued), scratch and set-aside folder."""
        self._tidy(keep_ready=False)

    def _tidy(self, *, keep_ready: bool, keep: str | None = None) -> None:
        prefixes = (SCRATCH_PREFIX, MAKING_PREFIX, GONE_PREFIX) + (() if keep_ready else (READY_PREFIX,))
        for leftover in self.root.iterdir():
            if leftover.name != keep and leftover.name.startswith(prefixes):
                remove_tree(leftover, log.warning)

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


def _unusable(holder: Path, project: str, commit: str) -> str | None:
    """Why the ready area in `holder` must not be used for `project` at `commit` (None: it may)."""
    try:
        if not stat.S_ISDIR(os.lstat(holder).st_mode):
            return "it is not a folder"
        mark = ReadyMark.model_validate_json(read_file(holder / READY_MARK, 4096).data)
        made = _identity(holder / READY_AREA)
    except (OSError, ValidationError) as exc:
        return f"half-made or unreadable ({exc})"
    if (mark.project, mark.commit) != (project, commit):
        return f"its mark names {mark.project} at {mark.commit[:12]}"
    if made != mark.folder:
        return "its folder changed after it was made"
    return None


def _identity(folder: Path) -> tuple[int, int, int]:
    """A real folder's device, inode and ctime (changed by any entry added, removed or renamed in it)."""
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode):
        raise NotADirectoryError(f"{folder} is not a real folder")
    return info.st_dev, info.st_ino, info.st_ctime_ns


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
