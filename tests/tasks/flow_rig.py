"""A TaskFlow on real parts (SQLite queue, git mirror, files, decision log) with a stand-in judge.

`FlowRig.restart()` models a kill -9 and a new start: the flow, the queue handle and the decision
log are made again from what is on disk, and `recover()` runs as the event loop runs it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from agent.task import write_task_result
from sandbox.errors import EngineUnavailableError
from supervisor.loop.context import StopFlag
from supervisor.loop.task_flow import Holding, TaskFlow
from supervisor.store.decision_log import DecisionLog
from supervisor.store.projects import ProjectRegistry
from supervisor.store.tasks.models import NewTask, Task, TaskState, TaskVerdict
from supervisor.store.tasks.queue import TaskQueue
from supervisor.store.tasks.sqlite_queue import open_queue
from supervisor.work.task_area import TaskArea
from tests.tasks.task_factory import make_mirror, project

WORKER = "rig-instance"


class Killed(BaseException):
    """A kill -9 at a chosen step: nothing after it runs (a BaseException, so no `except` stops it)."""


class FakeJudge:
    """Judges without containers: an outcome to give, or an engine that is down."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []
        self.down = False
        self.outcome = "passed"

    def judge(self, mirror: Path, config: Any, task: Task, result_commit: str) -> TaskVerdict:
        self.calls.append((task.id, result_commit))
        if self.down:
            raise EngineUnavailableError("the engine stopped answering")
        return TaskVerdict(
            outcome=self.outcome,  # type: ignore[arg-type]
            reason="judged by the rig",
            base_commit=task.base_commit,
            result_commit=result_commit,
        )


class SlowJudge(FakeJudge):
    """The stand-in judge, taking `seconds` (a project whose tests outlast a lease); `meanwhile` runs
    `at` seconds in, on the judging thread (what another node or the operator does meanwhile);
    `raises` ends the judging with that error instead of a verdict."""

    def __init__(
        self,
        seconds: float,
        *,
        at: float = 0.0,
        meanwhile: Callable[[], None] = lambda: None,
        raises: BaseException | None = None,
    ) -> None:
        super().__init__()
        self.seconds = seconds
        self.at = at
        self.meanwhile = meanwhile
        self.raises = raises

    def judge(self, mirror: Path, config: Any, task: Task, result_commit: str) -> TaskVerdict:
        started = time.monotonic()
        time.sleep(self.at)
        self.meanwhile()
        time.sleep(max(0.0, self.seconds - (time.monotonic() - started)))
        if self.raises is not None:
            raise self.raises
        return super().judge(mirror, config, task, result_commit)


def renewal_threads() -> list[str]:
    """The lease renewals running now (supervisor/loop/lease_keeper.py names its threads)."""
    return [t.name for t in threading.enumerate() if t.name.startswith("lease-renewal")]


class FlowRig:
    def __init__(
        self,
        root: Path,
        *,
        open_queue: Callable[[Path], TaskQueue] = lambda home: open_queue(home / "tasks.sqlite3"),
        holding: Holding | None = None,
        **project_extra: object,
    ) -> None:
        self.root = root
        self.open_queue = open_queue
        self.holding = holding or Holding(worker=WORKER)
        self.home = root / "home"
        self.registry = ProjectRegistry(self.home / "projects")
        self.mirror, self.base = make_mirror(self.registry.folder("calc"))
        self.registry.save(project(**project_extra))
        self.outbox = self.home / "run" / "outbox"
        self.outbox.mkdir(parents=True)
        self.judge = FakeJudge()
        self.notes: list[tuple[str, str]] = []
        self.spent = 0
        self.stop = StopFlag()
        self.flow = self._flow()

    def _flow(self) -> TaskFlow:
        self.queue = self.open_queue(self.home)
        self.decisions = DecisionLog(self.home / "decisions.jsonl")
        ctx: Any = SimpleNamespace(instance=SimpleNamespace(instance_id=WORKER), stop=self.stop)
        return TaskFlow(
            ctx,
            queue=self.queue,
            registry=self.registry,
            area=TaskArea(self.home / "task-work", self.home / "run" / "task"),
            judge=self.judge,  # type: ignore[arg-type]
            decisions=self.decisions,
            note=lambda kind, body: self.notes.append((kind, body)),
            tokens=lambda: self.spent,
            generation=lambda: 0,
            holding=self.holding,
        )

    def restart(self) -> TaskFlow:
        self.queue.close()
        self.flow = self._flow()
        self.flow.recover()
        return self.flow

    # -- the operator ---------------------------------------------------------------------------

    def add(self, title: str = "mul is wrong", base: str | None = None, priority: int = 0) -> Task:
        return self.queue.add(NewTask(project="calc", title=title, base_commit=base or self.base, priority=priority))

    def state(self, task_id: int) -> TaskState:
        return self.queue.get(task_id).state

    # -- what the agent sees and does -----------------------------------------------------------

    @property
    def area(self) -> Path:
        return self.home / "task-work" / "projects" / "calc"

    def task_file(self) -> dict[str, Any] | None:
        path = self.home / "run" / "task" / "task.json"
        return json.loads(path.read_text()) if path.exists() else None

    def done(self, task_id: int, summary: str = "fixed mul") -> Path:
        message = write_task_result(self.outbox, task_id, summary)
        return self.outbox / f"task-result-{message.id}.json"

    def outbox_files(self) -> list[str]:
        return sorted(os.listdir(self.outbox))

    # -- the supervisor's records ---------------------------------------------------------------

    def records(self, kind: str) -> list[dict[str, Any]]:
        return [r.details for r in self.decisions.records() if r.kind == kind]

    def judged(self, task_id: int) -> list[dict[str, Any]]:
        return [d for d in self.records("task-judged") if d["task"] == task_id]

    def note_kinds(self) -> list[str]:
        return [kind for kind, _ in self.notes]
