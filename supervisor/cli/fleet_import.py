"""`supervisor fleet import FILE.jsonl`: SWE-bench-style instances into the fleet, all or none, prioritised.

The lines are read as `supervisor task import` reads them (supervisor/store/tasks/swebench.py);
each may also bring its priority hints: health, impact, solvability, urgency (0..1), labels (a
list of strings), created_at (the issue's date, ISO-8601) and language. Projects are the fleet's
(`fleet project add`). Bases and test patches are checked in this node's mirrors where it has
one; the projects it has no mirror of are listed as unchecked (the claiming node checks them).
A file of any size is read, checked and inserted CHUNK lines at a time inside one transaction, so
the import's memory does not grow with the file (bench/fleet_import.py: 100,000 lines).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click
from pydantic import ValidationError

from supervisor.cli.common import emit, home_option, json_option
from supervisor.cli.fleet_common import open_fleet
from supervisor.cli.fleet_contract import FleetImportOut
from supervisor.cli.fleet_task_cmds import has_mirror
from supervisor.cli.task_checks import SHOWN_ERRORS, check_in_mirrors, import_refusal
from supervisor.cli.task_contract import SkippedLine
from supervisor.store.projects import ProjectConfig, ProjectRegistry
from supervisor.store.tasks.models import NewTask, TaskError
from supervisor.store.tasks.priority import PriorityHints
from supervisor.store.tasks.swebench import (
    ImportBatch,
    ImportedTask,
    LineError,
    Resolver,
    project_resolver,
    read_instance_chunks,
)

if TYPE_CHECKING:  # psycopg is imported only when a fleet command runs (the gate's container has none)
    from supervisor.base.pg.pool import Cursor

CHUNK = 1000  # lines read, checked, prioritised and inserted at a time: what an import holds at once


def _hints(item: ImportedTask) -> PriorityHints | str:
    try:
        return PriorityHints.model_validate(item.hints)
    except ValidationError as exc:
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())


def _check_local(registry: ProjectRegistry, batch: ImportBatch) -> list[str]:
    """Check bases and patches in this node's mirrors; the names of the projects it could not check."""
    local = ImportBatch([item for item in batch.tasks if has_mirror(registry, item.task.project)])
    check_in_mirrors(registry, local)
    checked = {id(item) for item in local.tasks}
    unchecked = sorted({i.task.project for i in batch.tasks if not has_mirror(registry, i.task.project)})
    batch.tasks = [i for i in batch.tasks if id(i) in checked or not has_mirror(registry, i.task.project)]
    batch.errors += local.errors
    return unchecked


class _Import:
    """One import, read a chunk of lines at a time: the chunks of good lines for the queue, the bad lines
    said. Without --skip-bad a bad line stops the queueing but not the reading (the refusal names every
    bad line; only the first SHOWN_ERRORS are kept, with the count) and the end refuses all."""

    def __init__(self, file: Path, resolve: Resolver, registry: ProjectRegistry, skip_bad: bool) -> None:
        self.file, self.resolve, self.registry, self.skip_bad = file, resolve, registry, skip_bad
        self.bad: list[LineError] = []
        self.bad_count = 0
        self.unchecked: set[str] = set()

    def chunks(self, cursor: Cursor) -> Iterator[list[tuple[NewTask, PriorityHints]]]:
        from supervisor.store.tasks.pg_fleet import queued_in

        source = f"fleet import {self.file.name}"
        for batch in read_instance_chunks(self.file, self.resolve, source=source, lines=CHUNK):
            self.unchecked.update(_check_local(self.registry, batch))
            queued = queued_in(
                cursor, [(i.task.project, i.task.external_id) for i in batch.tasks if i.task.external_id]
            )
            good: list[tuple[NewTask, PriorityHints]] = []
            for item in batch.tasks:
                hints = _hints(item)
                task_id = queued.get((item.task.project, item.task.external_id or ""))
                if task_id is not None:
                    batch.errors.append(
                        LineError(item.line, f"instance {item.task.external_id!r} is already task {task_id}")
                    )
                elif isinstance(hints, str):
                    batch.errors.append(LineError(item.line, f"priority hints: {hints}"))
                else:
                    good.append((item.task, hints))
            self._said(batch.errors)
            if self.skip_bad or not self.bad_count:
                yield good
        if self.bad_count and not self.skip_bad:
            raise TaskError(import_refusal(self.file, self.bad, self.bad_count))

    def _said(self, errors: list[LineError]) -> None:
        """Keep a chunk's bad lines (its lines all follow the last chunk's, so `bad` stays in line order)."""
        self.bad_count += len(errors)
        keep = len(errors) if self.skip_bad else max(0, SHOWN_ERRORS - len(self.bad))
        self.bad += sorted(errors, key=lambda error: error.line)[:keep]


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--skip-bad", is_flag=True, help="Queue the good lines and list the bad ones (default: queue none).")
@home_option
@json_option
def fleet_import_cmd(file: Path, skip_bad: bool, home: Path | None, as_json: bool) -> None:
    """Queue SWE-bench-style instances in the fleet, all or none, each with its computed priority."""
    from supervisor.store.tasks.pg_fleet import fleet_projects, queue_prioritised

    with open_fleet(home) as fleet:
        known = [ProjectConfig(name=p.name, source=p.source) for p in fleet_projects(fleet.queue.db)]
        run = _Import(file, project_resolver(known), ProjectRegistry(fleet.instance.projects), skip_bad)
        settings = fleet.settings
        ids = queue_prioritised(
            fleet.queue, run.chunks, settings.weights, settings.budgets.language_tasks, datetime.now(UTC)
        )
    bad, unchecked = run.bad, sorted(run.unchecked)
    data = FleetImportOut(
        file=str(file),
        queued=ids,
        skipped=[SkippedLine(line=e.line, message=e.message) for e in bad],
        unchecked_bases=unchecked,
    )
    lines = [f"queued {len(ids)} task(s) in the fleet from {file}" + (f": {ids[0]}..{ids[-1]}" if ids else "")]
    if unchecked:
        lines.append(f"bases not checked here (no mirror on this node): {', '.join(unchecked)}")
    if bad:
        lines += [f"skipped {len(bad)} bad line(s):"] + [f"  {error}" for error in bad]
    emit(as_json, data, "\n".join(lines))
