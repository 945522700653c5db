"""`supervisor fleet import FILE.jsonl`: SWE-bench-style instances into the fleet, all or none, prioritised.

The lines are read as `supervisor task import` reads them (supervisor/store/tasks/swebench.py);
each may also bring its priority hints: health, impact, solvability, urgency (0..1), labels (a
list of strings), created_at (the issue's date, ISO-8601) and language. Projects are the fleet's
(`fleet project add`). Bases and test patches are checked in this node's mirrors where it has
one; the projects it has no mirror of are listed as unchecked (the claiming node checks them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click
from pydantic import ValidationError

from supervisor.cli.common import emit, home_option, json_option
from supervisor.cli.fleet_common import open_fleet
from supervisor.cli.fleet_contract import FleetImportOut
from supervisor.cli.fleet_task_cmds import has_mirror
from supervisor.cli.task_checks import check_in_mirrors, import_refusal
from supervisor.cli.task_contract import SkippedLine
from supervisor.store.projects import ProjectConfig, ProjectRegistry
from supervisor.store.tasks.models import TaskError
from supervisor.store.tasks.priority import PriorityHints
from supervisor.store.tasks.swebench import ImportBatch, ImportedTask, LineError, project_resolver, read_instances


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


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--skip-bad", is_flag=True, help="Queue the good lines and list the bad ones (default: queue none).")
@home_option
@json_option
def fleet_import_cmd(file: Path, skip_bad: bool, home: Path | None, as_json: bool) -> None:
    """Queue SWE-bench-style instances in the fleet, all or none, each with its computed priority."""
    from supervisor.store.tasks.pg_fleet import add_prioritised, fleet_projects, queued_external_ids

    with open_fleet(home) as fleet:
        known = [ProjectConfig(name=p.name, source=p.source) for p in fleet_projects(fleet.queue.db)]
        batch = read_instances(file, project_resolver(known), source=f"fleet import {file.name}")
        unchecked = _check_local(ProjectRegistry(fleet.instance.projects), batch)
        queued = queued_external_ids(
            fleet.queue.db, [(i.task.project, i.task.external_id) for i in batch.tasks if i.task.external_id]
        )
        good: list[tuple[ImportedTask, PriorityHints]] = []
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
                good.append((item, hints))
        bad = sorted(batch.errors, key=lambda error: error.line)
        if bad and not skip_bad:
            raise TaskError(import_refusal(file, bad))
        settings = fleet.settings
        added = add_prioritised(
            fleet.queue,
            [(item.task, hints) for item, hints in good],
            settings.weights,
            settings.budgets.language_tasks,
            datetime.now(UTC),
        )
    ids = [task.id for task, _ in added]
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
