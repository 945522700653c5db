"""`supervisor fleet add/import/tasks/task show`: the fleet's tasks, prioritised (docs/fleet.md).

A task's base is resolved and its test patch checked in this node's mirror of the project when it
has one; otherwise `--base` must be the full commit id (the node that claims it checks it again).
Each task gets its priority factors (given, else by rule: supervisor/store/tasks/priority.py) and
is refused whole when its language is at the fleet's per-language limit.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import click
from pydantic import ValidationError

from supervisor.cli.common import emit, home_option, json_option
from supervisor.cli.fleet_common import open_fleet
from supervisor.cli.fleet_contract import FleetTaskOut, FleetTaskShowOut
from supervisor.cli.fleet_results import remote_result_diff
from supervisor.cli.task_git import check_patch, mirror_git, read_text_file, resolve_base
from supervisor.cli.task_show import LIST_HEADER, render_attempts, render_task, render_verdict, task_json, task_line
from supervisor.store.projects import ProjectRegistry
from supervisor.store.tasks.models import COMMIT_PATTERN, MAX_BODY, MAX_TEST_PATCH, NewTask, Task, TaskError, TaskState
from supervisor.store.tasks.priority import PriorityBreakdown, PriorityHints, render_breakdown

FACTOR = click.FloatRange(0, 1)


def has_mirror(registry: ProjectRegistry, name: str) -> bool:
    return name in registry.names() and (registry.mirror(name) / "HEAD").is_file()


def fleet_base(registry: ProjectRegistry, project: str, base: str | None, patch: str) -> str:
    """The base commit: resolved (and the patch checked) in this node's mirror, else `base` as a full id."""
    if has_mirror(registry, project):
        commit = resolve_base(registry, registry.get(project), base)
        check_patch(mirror_git(registry, project), commit, patch)
        return commit
    if base is None or not re.match(COMMIT_PATTERN, base.lower()):
        raise TaskError(
            f"this node has no mirror of {project!r} to resolve the base in; give --base with the full 40-hex "
            f"commit id, or add the project here (`supervisor project add {project} SOURCE`)"
        )
    return base.lower()


def hints_of(**given: object) -> PriorityHints:
    try:
        return PriorityHints.model_validate({k: v for k, v in given.items() if v is not None and v != ()})
    except ValidationError as exc:
        raise TaskError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None


def fleet_task_json(task: Task, breakdown: PriorityBreakdown | None, language: str | None) -> FleetTaskOut:
    return FleetTaskOut.model_validate({"task": task_json(task), "language": language, "breakdown": breakdown})


@click.command("add")
@click.option("--project", "project_name", required=True, help="A project of the fleet (`fleet project add`).")
@click.option("--title", required=True, help="One line: what to do.")
@click.option("--body-file", type=click.Path(dir_okay=False, path_type=Path), help="The problem statement (UTF-8).")
@click.option("--base", help="Branch, tag or commit (this node's mirror); without a mirror: the full commit id.")
@click.option("--fail-to-pass", multiple=True, metavar="ID", help="A test that must fail before and pass after.")
@click.option("--pass-to-pass", multiple=True, metavar="ID", help="A test that must keep passing (default: all).")
@click.option("--test-patch", type=click.Path(dir_okay=False, path_type=Path), help="Hidden tests (a git patch).")
@click.option("--health", type=FACTOR, help="Factor 0..1; default: the project's recent pass rate.")
@click.option("--impact", type=FACTOR, help="Factor 0..1; default: from labels and keywords.")
@click.option("--solvability", type=FACTOR, help="Factor 0..1; default: from FAIL_TO_PASS and the statement.")
@click.option("--urgency", type=FACTOR, help="Factor 0..1; default: from --opened.")
@click.option("--label", "labels", multiple=True, help="An issue label (for the impact and urgency rules).")
@click.option("--opened", type=click.DateTime(), help="When the issue was opened, UTC (for the urgency rule).")
@click.option("--language", help="The task's language (default: its project's).")
@home_option
@json_option
def fleet_add_cmd(
    project_name: str,
    title: str,
    body_file: Path | None,
    base: str | None,
    fail_to_pass: tuple[str, ...],
    pass_to_pass: tuple[str, ...],
    test_patch: Path | None,
    health: float | None,
    impact: float | None,
    solvability: float | None,
    urgency: float | None,
    labels: tuple[str, ...],
    opened: datetime | None,
    language: str | None,
    home: Path | None,
    as_json: bool,
) -> None:
    """Queue one task in the fleet, with its computed priority."""
    hints = hints_of(
        health=health, impact=impact, solvability=solvability, urgency=urgency, labels=list(labels),
        created_at=opened.replace(tzinfo=UTC) if opened else None, language=language,
    )  # fmt: skip
    from supervisor.store.tasks.pg_fleet import add_prioritised, breakdown_of, fleet_projects

    with open_fleet(home) as fleet:
        if project_name not in {p.name for p in fleet_projects(fleet.queue.db)}:
            raise TaskError(
                f"no project {project_name!r} in the fleet; add it with `supervisor fleet project add "
                f"{project_name} SOURCE` (nothing was queued)"
            )
        body = read_text_file(body_file, MAX_BODY, "body file") if body_file else ""
        patch = read_text_file(test_patch, MAX_TEST_PATCH, "test patch") if test_patch else ""
        commit = fleet_base(ProjectRegistry(fleet.instance.projects), project_name, base, patch)
        new = NewTask(
            project=project_name, title=title, body=body, base_commit=commit, fail_to_pass=list(fail_to_pass),
            pass_to_pass=list(pass_to_pass) if pass_to_pass else None, test_patch=patch, source="fleet add",
        )  # fmt: skip
        settings = fleet.settings
        [(task, breakdown)] = add_prioritised(
            fleet.queue, [(new, hints)], settings.weights, settings.budgets.language_tasks, datetime.now(UTC)
        )
        _, metadata = breakdown_of(fleet.queue.db, task.id)
    out = fleet_task_json(task, breakdown, metadata.get("language"))
    emit(as_json, out, "\n".join([f"queued task {task.id}", *render_task(task), *render_breakdown(breakdown)]))


@click.command("tasks")
@click.option("--state", "states", multiple=True, type=click.Choice([s.value for s in TaskState]))
@click.option("--project", help="Only tasks of this project.")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="At most this many (oldest first).")
@home_option
@json_option
def fleet_tasks_cmd(
    states: tuple[str, ...], project: str | None, limit: int | None, home: Path | None, as_json: bool
) -> None:
    """List the fleet's tasks, oldest first (priority: the computed one × 1000)."""
    from supervisor.store.tasks.pg_fleet import breakdowns_of

    with open_fleet(home) as fleet:
        tasks = fleet.queue.find(
            states=[TaskState(s) for s in states] if states else None, project=project, limit=limit
        )
        extra = breakdowns_of(fleet.queue.db, [task.id for task in tasks]) if as_json else {}
    if as_json:
        outs = [fleet_task_json(t, extra[t.id][0], extra[t.id][1].get("language")) for t in tasks]
        return emit(True, outs, "")
    lines = [LIST_HEADER + "  HELD BY"] + [task_line(t) + (f"  [{t.worker}]" if t.worker else "") for t in tasks]
    emit(False, None, "\n".join(lines) if tasks else "no tasks")


@click.group("task")
def fleet_task_group() -> None:
    """One fleet task."""


@fleet_task_group.command("show")
@click.argument("task_id", type=int, metavar="ID")
@home_option
@json_option
def fleet_task_show_cmd(task_id: int, home: Path | None, as_json: bool) -> None:
    """Show a fleet task: fields, priority breakdown, verdict, attempts, and its result's diff."""
    from supervisor.store.tasks.pg_analysis import analysis_of
    from supervisor.store.tasks.pg_fleet import breakdown_of

    with open_fleet(home) as fleet:
        task, attempts = fleet.queue.get(task_id), fleet.queue.attempts(task_id)
        breakdown, metadata = breakdown_of(fleet.queue.db, task_id)
        analysis = analysis_of(fleet.queue.db, task_id)
        remote = fleet.settings.results_remote
    diff, note = remote_result_diff(remote, task)
    data = FleetTaskShowOut.model_validate(
        {"task": task_json(task), "attempts": attempts, "breakdown": breakdown, "metadata": metadata,
         "analysis": analysis.model_dump(mode="json") if analysis.state else None, "diff": diff, "diff_note": note}
    )  # fmt: skip
    lines = render_task(task)
    lines += render_breakdown(breakdown) if breakdown else ["priority     set without factors"]
    if metadata.get("language"):
        lines.append(f"language     {metadata['language']}" + _labels(metadata))
    if analysis.state:
        lines.append(f"analysis     {analysis.state}" + (f": {_said(analysis.result)}" if analysis.result else ""))
    lines += render_verdict(task) + render_attempts(attempts)
    if task.summary:
        lines += ["summary (the agent's words):"] + [f"  {line}" for line in task.summary.splitlines()]
    if diff is not None:
        lines += [f"diff {task.base_commit[:12]}..{task.result_commit or ''} ({task.result_branch}):", diff]
    elif note:
        lines.append(f"diff         unavailable: {note}")
    emit(as_json, data, "\n".join(lines))


def _said(result: dict[str, object]) -> str:
    return ", ".join(f"{key} {value}" for key, value in result.items())


def _labels(metadata: dict[str, object]) -> str:
    labels = metadata.get("labels")
    return f"  labels {', '.join(map(str, labels))}" if isinstance(labels, list) and labels else ""
