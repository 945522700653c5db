"""The task flow makes the queue head's work area while the agent works, and the claim uses it.

Real parts: an instance, the SQLite queue, a project mirror made by `create_mirror`, the TaskArea,
`TaskFlow` itself; the engine is the fake one (nothing here runs a container).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox.fake import FakeEngine
from supervisor.base.git_ops import Git
from supervisor.loop.context import LoopContext, StopFlag
from supervisor.loop.task_flow import Holding, TaskFlow
from supervisor.store.decision_log import DecisionLog
from supervisor.store.instance_init import init_instance, package_dir
from supervisor.store.projects import ProjectConfig, ProjectRegistry
from supervisor.store.tasks.models import NewTask
from supervisor.store.tasks.sqlite_queue import open_queue
from supervisor.work.mirror import create_mirror
from supervisor.work.task_area import READY_PREFIX, TaskArea
from supervisor.work.task_judge import TaskJudge
from tests.tasks.task_factory import make_mirror

SCENARIO = package_dir("scripted_model") / "scenarios" / "idle_loop.json"


class Flow:
    def __init__(self, tmp_path: Path) -> None:
        instance = init_instance(tmp_path / "home", SCENARIO, model="claude-sonnet-5-5")
        source, self.base = make_mirror(tmp_path / "source")
        self.registry = ProjectRegistry(instance.projects)
        create_mirror(self.registry, ProjectConfig(name="calc", source=str(source)))
        self.queue = open_queue(instance.tasks_db)
        self.area = TaskArea(instance.task_work, instance.run_dir / "task")
        engine = FakeEngine()
        self.ctx = LoopContext(instance, instance.config(), engine, StopFlag())
        self.flow = TaskFlow(
            self.ctx,
            queue=self.queue,
            registry=self.registry,
            area=self.area,
            judge=TaskJudge(
                engine,
                scratch=instance.state / "task-scratch",
                instance="t",
                cache=instance.state / "task-baselines",
                agent_image=lambda: "fake",
            ),
            decisions=DecisionLog(instance.state / "decisions.jsonl"),
            note=lambda kind, body: None,
            tokens=lambda: 0,
            generation=lambda: None,
            holding=Holding(worker="t"),
        )

    def add(self, title: str) -> int:
        return self.queue.add(NewTask(project="calc", title=title, base_commit=self.base)).id

    def extras(self) -> list[str]:
        return sorted(p.name for p in self.area.root.iterdir() if p.name.startswith("."))


@pytest.fixture
def setup(tmp_path: Path) -> Flow:
    return Flow(tmp_path)


def _no_export(*args: object, **kwargs: object) -> int:
    raise AssertionError("exported at the claim although the area was made ahead")


def test_the_head_is_made_ahead_on_a_tick_and_its_claim_only_renames_it(setup: Flow, monkeypatch) -> None:
    first, second = setup.add("first"), setup.add("second")
    setup.flow.recover()  # claims `first` (nothing was made ahead: an export)
    assert setup.flow.active is not None and setup.flow.active.claim.task_id == first
    assert setup.extras() == []
    setup.flow.tick()  # the agent works on `first`; `second` is the head
    assert setup.extras() == [f"{READY_PREFIX}calc-{setup.base}"]
    setup.queue.cancel(first, "done with it")
    setup.flow.tick()  # `first` is withdrawn: its area is set aside, then removed by the same tick
    assert setup.flow.active is None and not setup.area.path_for("calc").exists()
    assert setup.extras() == [f"{READY_PREFIX}calc-{setup.base}"]
    monkeypatch.setattr(Git, "export_tree", _no_export)
    setup.flow.assign()
    assert setup.flow.active is not None and setup.flow.active.claim.task_id == second
    published = json.loads((setup.area.task_dir / "task.json").read_text())
    assert published["id"] == second and published["path"] == "/projects/calc"
    assert (setup.area.path_for("calc") / "calc" / "ops.py").is_file()
    assert setup.extras() == []
    setup.queue.cancel(second, "done with it")
    setup.flow.tick()
    assert setup.flow.active is None and setup.extras() == []  # nothing queued: set aside and removed


def test_nothing_is_made_ahead_once_a_stop_is_asked_for(setup: Flow) -> None:
    setup.add("first")
    setup.add("second")
    setup.flow.recover()
    setup.ctx.stop.request()
    setup.flow.tick()
    assert setup.extras() == []
