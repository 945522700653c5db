"""Checks of an import (or a bench set) against the instance: bases in the mirrors, test patches that
apply, instances not queued twice; each failure becomes an error naming its line."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from supervisor.cli.task_git import has_commit, mirror_git, patch_problems
from supervisor.store.projects import ProjectRegistry
from supervisor.store.tasks.models import TaskError
from supervisor.store.tasks.sqlite_queue import SqliteTaskQueue
from supervisor.store.tasks.swebench import ImportBatch, LineError

SHOWN_ERRORS = 50  # bad lines listed in an import's error; the count says how many more


def check_in_mirrors(registry: ProjectRegistry, batch: ImportBatch) -> None:
    """Move every task whose base is not in its project's mirror, or whose test patch does not apply, to errors."""
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for index, item in enumerate(batch.tasks):
        groups[(item.task.project, item.task.base_commit)].append(index)
    bad: dict[int, str] = {}
    for (project, base), indexes in groups.items():
        try:
            git = mirror_git(registry, project)
        except TaskError as exc:
            bad.update((index, str(exc)) for index in indexes)
            continue
        if not has_commit(git, base):
            why = f"base_commit {base} is not in the mirror of {project!r}; run `supervisor project fetch {project}`"
            bad.update((index, why) for index in indexes)
            continue
        problems = patch_problems(git, base, [(index, batch.tasks[index].task.test_patch) for index in indexes])
        bad.update((index, f"test_patch does not apply to {base[:12]}: {why}") for index, why in problems.items())
    _move_to_errors(batch, bad)


def check_not_queued(queue: SqliteTaskQueue, batch: ImportBatch) -> None:
    """Move every instance already in the queue (same project and instance_id) to errors."""
    known: dict[tuple[str, str], int] = {}
    for project in sorted({item.task.project for item in batch.tasks}):
        known.update(((project, task.external_id), task.id) for task in queue.find(project=project) if task.external_id)
    bad: dict[int, str] = {}
    for index, item in enumerate(batch.tasks):
        task_id = known.get((item.task.project, item.task.external_id or ""))
        if task_id is not None:
            bad[index] = f"instance {item.task.external_id!r} is already task {task_id}; leave it out"
    _move_to_errors(batch, bad)


def _move_to_errors(batch: ImportBatch, bad: dict[int, str]) -> None:
    batch.errors += [LineError(batch.tasks[index].line, why) for index, why in sorted(bad.items())]
    batch.tasks = [item for index, item in enumerate(batch.tasks) if index not in bad]


def import_refusal(file: Path, bad: list[LineError], total: int | None = None) -> str:
    """The error of an import refused for its bad lines: the first SHOWN_ERRORS of `bad` (in line order)
    and how many there were (`total`, when only the first ones were kept)."""
    count = len(bad) if total is None else total
    shown = [f"  {error}" for error in bad[:SHOWN_ERRORS]]
    if count > len(shown):
        shown.append(f"  ... and {count - len(shown)} more")
    return (
        f"{file}: {count} bad line(s), nothing was queued; fix them, or pass --skip-bad to queue the good "
        "ones:\n" + "\n".join(shown)
    )
