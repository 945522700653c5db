"""`supervisor task export|push|pr`: deliver a judged task's result, by hand, with the supervisor's credentials.

The commands are attached to the `task` group (TASK_DELIVERY_COMMANDS); docs/delivery.md says what
each refuses and why.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import click
from pydantic import BaseModel, ConfigDict

from supervisor.cli.common import emit, home_option, json_option
from supervisor.cli.terminal_text import terminal_safe
from supervisor.store.instance import ContributeSettings, Instance
from supervisor.store.projects import ProjectRegistry
from supervisor.store.tasks.models import Task
from supervisor.store.tasks.queue import TaskQueue
from supervisor.store.tasks.sqlite_queue import open_queue
from supervisor.work.delivery import (
    DeliveryError,
    PullRequestReport,
    PushReport,
    check_deliverable,
    export_patch,
    open_pull_request,
    push,
    task_branch,
)


class ExportOut(BaseModel):
    """`task export --json`: where the patch went."""

    model_config = ConfigDict(extra="forbid")

    task_id: int
    file: str
    bytes: int
    sha256: str


force_option = click.option(
    "--force",
    is_flag=True,
    help="Deliver a task that did not pass cleanly (failed, or passed but needs review): read its diff first.",
)


def _open_queue(instance: Instance) -> TaskQueue:
    return open_queue(instance.tasks_db)


def _load(home: Path | None, task_id: int) -> tuple[Instance, Task]:
    instance = Instance.locate(home)
    queue = _open_queue(instance)
    try:
        return instance, queue.get(task_id)
    finally:
        queue.close()


def _settings(instance: Instance) -> ContributeSettings:
    return instance.config().contribute


@click.command("export")
@click.argument("task_id", type=int)
@click.option("--patch", "patch", required=True, help="Write the patch to this file; `-` writes it to stdout.")
@home_option
@json_option
def export_cmd(task_id: int, patch: str, home: Path | None, as_json: bool) -> None:
    """Write a task's change (base commit to result, binary-safe; `git apply` takes it) to a file."""
    if patch == "-" and as_json:
        raise click.UsageError("--json prints a report on stdout; give --patch FILE to write the patch to a file")
    instance, task = _load(home, task_id)
    data = export_patch(ProjectRegistry(instance.projects).mirror(task.project), task)
    if patch == "-":
        out = sys.stdout.buffer
        # A terminal gets the text with escape sequences made visible; a pipe gets the exact bytes.
        out.write(terminal_safe(data.decode("utf-8", "replace")).encode() if sys.stdout.isatty() else data)
        out.flush()
        return
    try:
        Path(patch).write_bytes(data)
    except OSError as exc:
        raise DeliveryError(f"cannot write the patch to {patch}: {exc.strerror}; choose another file") from exc
    report = ExportOut(
        task_id=task.id, file=str(Path(patch).resolve()), bytes=len(data), sha256=hashlib.sha256(data).hexdigest()
    )
    emit(as_json, report, f"wrote the change of task {task.id} ({len(data)} bytes) to {patch}")


@click.command("push")
@click.argument("task_id", type=int)
@click.option("--remote", default=None, help="Push to this URL or absolute path instead of [contribute] remote.")
@force_option
@home_option
@json_option
def push_cmd(task_id: int, remote: str | None, force: bool, home: Path | None, as_json: bool) -> None:
    """Push a passed task's result commit to the remote as branch `<branch_prefix><ID>`."""
    instance, task = _load(home, task_id)
    if remote is not None and "://" not in remote and Path(remote).exists():
        remote = str(Path(remote).resolve())  # a local path as the operator meant it, not relative to the mirror
    mirror = ProjectRegistry(instance.projects).mirror(task.project)
    report = push(mirror, task, _settings(instance), remote, force=force)
    text = f"pushed task {task.id} ({report.commit[:12]}) to {report.remote} as {report.branch}: {report.status}"
    if report.forced:
        text += f"\n(forced: the verdict was {report.verdict}{', needs review' if report.needs_review else ''})"
    emit(as_json, report, text)


@click.command("pr")
@click.argument("task_id", type=int)
@click.option("--head", default=None, help="The pushed branch (`owner:branch` for a fork); default: the task's.")
@force_option
@home_option
@json_option
def pr_cmd(task_id: int, head: str | None, force: bool, home: Path | None, as_json: bool) -> None:
    """Open a GitHub pull request of a pushed task branch, with the verdict and the agent's summary."""
    instance, task = _load(home, task_id)
    check_deliverable(task, force=force)
    settings = _settings(instance)
    project = ProjectRegistry(instance.projects).get(task.project)
    report = open_pull_request(task, project, settings, head_branch=head or task_branch(task, settings))
    emit(as_json, report, f"opened pull request #{report.number} of task {task.id}: {report.url}")


TASK_DELIVERY_COMMANDS: list[click.Command] = [export_cmd, push_cmd, pr_cmd]
# For supervisor/cli/json_reference.py's COMMANDS (docs/json.md), once the commands are attached.
TASK_DELIVERY_JSON: list[tuple[str, type[BaseModel]]] = [
    ("task export", ExportOut),
    ("task push", PushReport),
    ("task pr", PullRequestReport),
]
