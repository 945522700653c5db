"""`supervisor task bench`: a fixed set of tasks run against one generation, in a scratch instance.

The set (SWE-bench-style JSONL, docs/tasks.md) is read and checked against the live instance's
projects first: any bad line, unknown project, base missing from a mirror or test patch that does
not apply is an error listing every such line, and nothing is made. Then a scratch instance is made
(supervisor/store/scratch_instance.py: main at the live `gen/N`, proposals dropped so the generation
stays N, the live model route), the set is queued there in line order, and the real supervisor runs
until every task has a final state. The live instance's queue, repository and agent are never
touched; its home gains only the report (HOME/bench/). The scratch is removed unless kept.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sandbox.engine import DockerEngine
from sandbox.images import ensure_agent_image
from supervisor.base.errors import OuroborosError
from supervisor.cli.log_lines import lines_to
from supervisor.cli.task_checks import check_in_mirrors, import_refusal
from supervisor.loop import diskcap
from supervisor.loop.event_loop import Supervisor
from supervisor.store.instance import Instance
from supervisor.store.projects import ProjectRegistry
from supervisor.store.scratch_instance import generation_commit, make_scratch
from supervisor.store.tasks.bench_results import BenchReport, BenchTask, headline, save_report
from supervisor.store.tasks.models import FINAL, Task, TaskError
from supervisor.store.tasks.sqlite_queue import SqliteTaskQueue, open_queue
from supervisor.store.tasks.swebench import ImportedTask, project_resolver, read_instances

Progress = Callable[[str], None]


class BenchError(OuroborosError):
    """The bench could not run, or stopped before every task had its verdict."""


def read_set(live: Instance, set_file: Path) -> list[ImportedTask]:
    """The set's tasks in line order; a TaskError listing every bad line (nothing is made then)."""
    registry = ProjectRegistry(live.projects)
    batch = read_instances(set_file, project_resolver(registry.all()), source=f"bench {set_file.name}")
    check_in_mirrors(registry, batch)
    if batch.errors:
        bad = sorted(batch.errors, key=lambda error: error.line)
        raise TaskError(import_refusal(set_file, bad).replace("nothing was queued", "the bench did not start"))
    if not batch.tasks:
        raise TaskError(f"{set_file} holds no task; give one SWE-bench-style instance per line")
    return batch.tasks


def run_bench(
    live: Instance,
    generation: int,
    set_file: Path,
    *,
    keep: bool = False,
    scratch_home: Path | None = None,
    progress: Progress,
) -> BenchReport:
    """Run the set against `generation` in a new scratch instance; the report is also saved in the
    live HOME/bench/. `scratch_home`: where to make the scratch (default: a new temporary folder)."""
    started = datetime.now(UTC)
    commit = generation_commit(live, generation)  # an unknown generation fails before anything is read
    items = read_set(live, set_file)
    engine = DockerEngine.connect()
    image = ensure_agent_image(engine, progress=progress)
    made = None if scratch_home else Path(tempfile.mkdtemp(prefix="ouroboros-bench-"))
    home = scratch_home or Path(made or ".") / "home"
    progress(f"making a scratch instance of generation {generation} ({commit[:12]}) in {home} ...")
    try:
        scratch = make_scratch(home, live, generation, {item.task.project for item in items})
        queue = open_queue(scratch.tasks_db)
        try:
            ids = [task.id for task in queue.add_many(item.task for item in items)]
            watch = Watch(queue, ids, progress)
            supervisor = Supervisor(scratch, engine, image, stop_when=lambda _s: watch.done())
            progress(f"running {len(ids)} task(s) on generation {generation} ...")
            with lines_to(progress):
                supervisor.run()
            tasks = [_bench_task(item, queue.get(task_id)) for item, task_id in zip(items, ids, strict=True)]
        finally:
            queue.close()
    finally:
        if not keep:
            _remove(made or home)
    report = BenchReport(
        generation=generation,
        commit=commit,
        set_file=str(set_file),
        started_at=started,
        finished_at=datetime.now(UTC),
        tasks=tasks,
        complete=all(task.outcome != "unfinished" for task in tasks),
        scratch=str(home) if keep else None,
        **headline(tasks),
    )
    save_report(live.home, report)
    return report


class Watch:
    """The loop's `stop_when`: says each new verdict once, and True once every task is final."""

    def __init__(self, queue: SqliteTaskQueue, ids: list[int], progress: Progress) -> None:
        self.queue = queue
        self.ids = ids
        self.progress = progress
        self.seen: dict[int, str] = {}

    def done(self) -> bool:
        for task_id in self.ids:
            task = self.queue.get(task_id)
            shown = task.state.value
            if self.seen.get(task_id) != shown and task.state not in FINAL and shown != "queued":
                self.progress(f"task {task_id}: {shown}")
            elif self.seen.get(task_id) != shown and task.state in FINAL:
                tokens = task.verdict.tokens if task.verdict else 0
                finished = sum(t in FINAL for t in (self.queue.get(i).state for i in self.ids))
                self.progress(f"task {task_id} ({finished}/{len(self.ids)} done): {shown}, {tokens:,} tokens")
            self.seen[task_id] = shown
        return all(self.queue.get(task_id).state in FINAL for task_id in self.ids)


def _bench_task(item: ImportedTask, task: Task) -> BenchTask:
    verdict = task.verdict
    outcome = task.state.value if task.state in FINAL else "unfinished"
    return BenchTask(
        line=item.line,
        instance_id=task.external_id,
        task=task.id,
        project=task.project,
        title=task.title,
        outcome=outcome,
        tokens=verdict.tokens if verdict else 0,
        reason=(verdict.reason if verdict else (task.note or ""))[:2000],
        regressions=len(verdict.tests.regressions) if verdict else 0,
    )


def _remove(folder: Path) -> None:
    """The scratch, once whatever is mounted under it (its capped disk areas, when root) is unmounted."""
    if not folder.exists():
        return
    folder = folder.resolve()
    inside = [point for point in _mount_points() if point == folder or folder in point.parents]
    diskcap.release([diskcap.CappedArea(point.name, point, 0) for point in sorted(inside, reverse=True)])
    shutil.rmtree(folder, ignore_errors=True)


def _mount_points() -> list[Path]:
    """Where something is mounted (this process's view); none when that cannot be read."""
    try:
        text = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return []
    points = []
    for line in text.splitlines():
        fields = line.split(" ")
        if len(fields) > 4:  # the mount point is the fifth field, with octal escapes for spaces and such
            points.append(Path(fields[4].encode().decode("unicode_escape")))
    return points
