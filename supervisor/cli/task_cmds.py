"""`supervisor task ...`: queue work on a project, import SWE-bench instances, list, show, cancel, retry.

Everything is checked before anything is queued: the project exists, the base names a commit in
its mirror, the hidden test patch is UTF-8, small enough and applies to the base. An import is
all-or-none unless --skip-bad asks for the good lines only (docs/tasks.md).
"""

from __future__ import annotations

from pathlib import Path

import click

from supervisor.cli.bench_cmds import bench_cmd
from supervisor.cli.common import emit, home_option, json_option
from supervisor.cli.delivery_cmds import TASK_DELIVERY_COMMANDS
from supervisor.cli.task_checks import check_in_mirrors, check_not_queued, import_refusal
from supervisor.cli.task_contract import SkippedLine, TaskImportOut
from supervisor.cli.task_git import check_patch, mirror_git, read_text_file, resolve_base
from supervisor.cli.task_show import LIST_HEADER, instance_queue, render_task, show_cmd, task_json, task_line
from supervisor.store.projects import ProjectRegistry
from supervisor.store.tasks.models import MAX_BODY, MAX_TEST_PATCH, NewTask, TaskError, TaskState
from supervisor.store.tasks.swebench import project_resolver, read_instances


@click.group("task")
def task_group() -> None:
    """Tasks on projects: what the agent works on for you, judged by the project's own tests."""


@task_group.command("add")
@click.option("--project", "project_name", required=True, help="A project added with `supervisor project add`.")
@click.option("--title", required=True, help="One line: what to do.")
@click.option("--body-file", type=click.Path(dir_okay=False, path_type=Path), help="The problem statement (UTF-8).")
@click.option("--base", help="Branch, tag or commit the task starts from; default: the project's default branch.")
@click.option("--fail-to-pass", multiple=True, metavar="ID", help="A test that must fail before and pass after.")
@click.option("--pass-to-pass", multiple=True, metavar="ID", help="A test that must keep passing (default: all).")
@click.option("--test-patch", type=click.Path(dir_okay=False, path_type=Path), help="Hidden tests (a git patch).")
@click.option("--priority", type=int, default=0, show_default=True, help="Higher runs first.")
@home_option
@json_option
def add_cmd(
    project_name: str,
    title: str,
    body_file: Path | None,
    base: str | None,
    fail_to_pass: tuple[str, ...],
    pass_to_pass: tuple[str, ...],
    test_patch: Path | None,
    priority: int,
    home: Path | None,
    as_json: bool,
) -> None:
    """Queue one task on a project."""
    instance, queue = instance_queue(home)
    try:
        registry = ProjectRegistry(instance.projects)
        project = registry.get(project_name)
        body = read_text_file(body_file, MAX_BODY, "body file") if body_file else ""
        patch = read_text_file(test_patch, MAX_TEST_PATCH, "test patch") if test_patch else ""
        commit = resolve_base(registry, project, base)
        check_patch(mirror_git(registry, project.name), commit, patch)
        new = NewTask(
            project=project.name,
            title=title,
            body=body,
            base_commit=commit,
            fail_to_pass=list(fail_to_pass),
            pass_to_pass=list(pass_to_pass) if pass_to_pass else None,
            test_patch=patch,
            priority=priority,
        )
        task = queue.add(new)
    finally:
        queue.close()
    emit(as_json, task_json(task), f"queued task {task.id}\n" + "\n".join(render_task(task)))


@task_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--skip-bad", is_flag=True, help="Queue the good lines and list the bad ones (default: queue none).")
@home_option
@json_option
def import_cmd(file: Path, skip_bad: bool, home: Path | None, as_json: bool) -> None:
    """Queue SWE-bench-style instances from a JSONL file, all or none (docs/tasks.md)."""
    instance, queue = instance_queue(home)
    try:
        registry = ProjectRegistry(instance.projects)
        batch = read_instances(file, project_resolver(registry.all()))
        check_in_mirrors(registry, batch)
        check_not_queued(queue, batch)
        bad = sorted(batch.errors, key=lambda error: error.line)
        if bad and not skip_bad:
            raise TaskError(import_refusal(file, bad))
        tasks = queue.add_many(item.task for item in batch.tasks)
    finally:
        queue.close()
    data = TaskImportOut(
        file=str(file),
        queued=[task.id for task in tasks],
        skipped=[SkippedLine(line=error.line, message=error.message) for error in bad],
    )
    lines = [f"queued {len(tasks)} task(s) from {file}" + (f": {tasks[0].id}..{tasks[-1].id}" if tasks else "")]
    if bad:
        lines += [f"skipped {len(bad)} bad line(s):"] + [f"  {error}" for error in bad]
    emit(as_json, data, "\n".join(lines))


STATES = [state.value for state in TaskState]


@task_group.command("list")
@click.option("--state", "states", multiple=True, type=click.Choice(STATES), help="Only tasks in this state.")
@click.option("--project", help="Only tasks of this project.")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="At most this many (oldest first).")
@home_option
@json_option
def list_cmd(states: tuple[str, ...], project: str | None, limit: int | None, home: Path | None, as_json: bool) -> None:
    """List tasks, oldest first."""
    _, queue = instance_queue(home)
    try:
        tasks = queue.find(states=[TaskState(s) for s in states] if states else None, project=project, limit=limit)
    finally:
        queue.close()
    text = "\n".join([LIST_HEADER, *(task_line(task) for task in tasks)]) if tasks else "no tasks"
    emit(as_json, [task_json(task) for task in tasks], text)


@task_group.command("cancel")
@click.argument("task_id", type=int, metavar="ID")
@click.option("--reason", default="cancelled by the operator", show_default=True, help="Kept with the task.")
@home_option
@json_option
def cancel_cmd(task_id: int, reason: str, home: Path | None, as_json: bool) -> None:
    """Cancel a queued or running task (a running one's late results are refused)."""
    _, queue = instance_queue(home)
    try:
        task = queue.cancel(task_id, reason)
    finally:
        queue.close()
    emit(as_json, task_json(task), f"cancelled task {task.id}: {task.title}")


@task_group.command("retry")
@click.argument("task_id", type=int, metavar="ID")
@home_option
@json_option
def retry_cmd(task_id: int, home: Path | None, as_json: bool) -> None:
    """Queue a finished or cancelled task again (its attempts are kept)."""
    _, queue = instance_queue(home)
    try:
        task = queue.retry(task_id)
    finally:
        queue.close()
    emit(as_json, task_json(task), f"queued task {task.id} again: {task.title}")


task_group.add_command(show_cmd)
task_group.add_command(bench_cmd)
for _command in TASK_DELIVERY_COMMANDS:  # export, push, pr (supervisor/cli/delivery_cmds.py)
    task_group.add_command(_command)

COMMANDS = [task_group]
