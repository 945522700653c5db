"""The built-in demo: the real system, a throw-away instance, the scripted model, a sample project.

The sample project (examples/sample_project: a statistics package whose median() is wrong for
lists of even length) is registered and two tasks are queued. Generation 0 takes task 1, runs the
project's tests, fixes median() and reports the task done: the supervisor judges it from outside
(passed, with the fail-to-pass list). In its reflection it gives itself a new tool with a test and
proposes it: the gate passes it, `main` moves to generation 1 and the agent restarts on it.
Generation 1 takes task 2 (mode() on a tie; its test is hidden from the agent), changes mode()
hastily without running the tests: the verdict fails with the regression it made. In reflection it
proposes a change that breaks one of its own tests: the gate rejects it. No API key, no network.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from sandbox.engine import DockerEngine
from sandbox.images import ensure_agent_image
from supervisor.base.git_ops import safe_env
from supervisor.cli.contract import DemoTask
from supervisor.cli.log_lines import lines_to
from supervisor.gate.gatekeeper import Gatekeeper
from supervisor.loop.event_loop import Supervisor
from supervisor.store.instance import Instance
from supervisor.store.instance_init import init_instance, package_dir
from supervisor.store.projects import ProjectConfig, ProjectRegistry
from supervisor.store.tasks.models import NewTask, TaskState
from supervisor.store.tasks.sqlite_queue import open_queue
from supervisor.store.verdicts import Verdict
from supervisor.work.delivery import export_patch
from supervisor.work.mirror import create_mirror, resolve_commit

SAMPLE = "sample"

# One scenario per agent run, played back to back by one scripted server.
SCENARIO_PARTS = ("demo.json", "breaking_change.json")
# With tasks: each run's task (plan and execute) comes first, then that run's reflection.
TASK_SCENARIO_PARTS = (
    ("task_fix.json", None),
    ("demo.json", "reflect"),
    ("task_wrong_fix.json", None),
    ("breaking_change.json", "reflect"),
)
DEMO_MODEL = "claude-sonnet-5-5"


def write_demo_scenario(target: Path, *, with_tasks: bool = False) -> Path:
    from scripted_model.scenario import Scenario, load_scenario

    folder = package_dir("scripted_model") / "scenarios"
    parts = TASK_SCENARIO_PARTS if with_tasks else tuple((name, None) for name in SCENARIO_PARTS)
    steps = []
    for name, start_at in parts:
        part = load_scenario(folder / name).steps
        first = next(i for i, step in enumerate(part) if start_at is None or step.note == start_at)
        steps += part[first:]
    combined = Scenario(
        name="demo",
        description="generation 0: task 1 + new tool (accepted); generation 1: task 2 + a breaking change (rejected)",
        steps=steps,
    )
    target.write_text(combined.model_dump_json(indent=1, exclude_none=True))
    return target


def two_verdicts(supervisor: Supervisor) -> bool:
    return len(supervisor.verdicts) >= 2


def run_demo(home: Path | None, progress: Callable[[str], None]) -> tuple[Instance, Sequence[Verdict], list[int]]:
    home = home or Path(tempfile.mkdtemp(prefix="ouroboros-demo-"))
    engine = DockerEngine.connect()
    progress("making sure the agent image exists (built offline the first time) ...")
    image = ensure_agent_image(engine, progress=progress)
    home.mkdir(parents=True, exist_ok=True)
    scenario = write_demo_scenario(Path(tempfile.mkdtemp(prefix="ouroboros-scenario-")) / "demo.json", with_tasks=True)
    progress(f"initialising a throw-away instance in {home}")
    # One cycle per agent run keeps the scripted conversation in step with the restarts.
    instance = init_instance(home, scenario, max_cycles=1, model=DEMO_MODEL)
    config = instance.config()
    progress("gating generation 0: the packaged agent's own tests, in a container ...")
    Gatekeeper(
        instance.repo, engine=engine, journal_root=instance.journal, image=image, instance=instance.instance_id
    ).genesis()
    progress("registering the sample project and queueing two tasks ...")
    task_ids = queue_sample_tasks(instance, Path(tempfile.mkdtemp(prefix="ouroboros-sample-")))
    supervisor = Supervisor(
        instance, engine, image, config, stop_when=lambda s: two_verdicts(s) and tasks_done(instance)
    )
    with lines_to(progress):
        supervisor.run()
    return instance, supervisor.verdicts, task_ids


def lineage(instance: Instance) -> str:
    """`git log --graph` over generations, candidates and rejected proposals."""
    from supervisor.base.git_ops import Git

    return Git(instance.repo).out(
        "log",
        "--graph",
        "--format=%h %d %s",
        "--all",
        "--date-order",
        "--decorate-refs=refs/heads/",
        "--decorate-refs=refs/tags/",
        "--decorate-refs=refs/ouroboros/",
    )


def tasks_done(instance: Instance) -> bool:
    """Every task of the demo has its verdict."""
    queue = open_queue(instance.tasks_db)
    try:
        return not queue.find(states=[TaskState.QUEUED, TaskState.RUNNING, TaskState.JUDGING])
    finally:
        queue.close()


def sample_repository(target: Path) -> Path:
    """The sample project as a fresh git repository (the operator's side: a source to add)."""
    shutil.copytree(sample_project_dir(), target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = {**safe_env(), "GIT_AUTHOR_NAME": "Sample", "GIT_AUTHOR_EMAIL": "sample@example.invalid"}
    env |= {"GIT_COMMITTER_NAME": "Sample", "GIT_COMMITTER_EMAIL": "sample@example.invalid"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "The sample project"]):
        subprocess.run(["git", *args], cwd=target, env=env, check=True, capture_output=True)
    return target


def sample_project_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "examples" / "sample_project"


def queue_sample_tasks(instance: Instance, scratch: Path) -> list[int]:
    """Register the sample project and queue the demo's two tasks; their ids."""
    registry = ProjectRegistry(instance.projects)
    source = sample_repository(scratch / "sample_project")
    create_mirror(registry, ProjectConfig(name=SAMPLE, source=str(source), test_deadline_s=300))
    base = resolve_commit(registry.mirror(SAMPLE), "main")
    patch = (sample_project_dir().parent / "sample_tasks" / "mode_tie.test.patch").read_text()
    queue = open_queue(instance.tasks_db)
    try:
        first = queue.add(
            NewTask(
                project=SAMPLE,
                title="median() is wrong for lists of even length",
                body="median([4, 1, 3, 2]) returns 3; it must return 2.5, the mean of the two middle values.",
                base_commit=base,
                fail_to_pass=["tests/test_stats.py::test_median_of_even_length"],
                priority=10,
                source="demo",
            )
        )
        second = queue.add(
            NewTask(
                project=SAMPLE,
                title="mode() must return the smallest value on a tie",
                body="mode([3, 3, 1, 1, 2]) must return 1: when several values are most common, the smallest wins.",
                base_commit=base,
                fail_to_pass=["tests/test_stats.py::test_mode_of_a_tie_is_the_smallest"],
                test_patch=patch,
                priority=5,
                source="demo",
            )
        )
    finally:
        queue.close()
    return [first.id, second.id]


def demo_tasks(instance: Instance, task_ids: list[int]) -> list[DemoTask]:
    queue = open_queue(instance.tasks_db)
    try:
        tasks = [queue.get(task_id) for task_id in task_ids]
    finally:
        queue.close()
    shown = []
    for task in tasks:
        verdict = task.verdict
        shown.append(
            DemoTask(
                id=task.id,
                title=task.title,
                state=task.state.value,
                reason=verdict.reason if verdict else (task.note or ""),
                fail_to_pass_passed=verdict.tests.fail_to_pass_passed if verdict else [],
                fail_to_pass_failed=verdict.tests.fail_to_pass_failed if verdict else [],
                regressions=verdict.tests.regressions if verdict else [],
                branch=task.result_branch,
            )
        )
    return shown


def task_patch(instance: Instance, task_id: int) -> str:
    queue = open_queue(instance.tasks_db)
    try:
        task = queue.get(task_id)
    finally:
        queue.close()
    return export_patch(ProjectRegistry(instance.projects).mirror(task.project), task).decode("utf-8", "replace")
