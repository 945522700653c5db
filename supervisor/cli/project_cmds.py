"""`supervisor project`: register the repositories the agent works on, fetch them, show and remove them.

A project is HOME/projects/NAME: its project.toml and the supervisor's own bare mirror
(docs/projects.md). Fetching is supervisor/work/mirror.py's job; these commands only call it.
"""

from __future__ import annotations

import shlex
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import click

from supervisor.base.git_ops import Git
from supervisor.cli.common import emit, home_option, json_option
from supervisor.cli.contract import ProjectAddOut, ProjectOut, ProjectRemoveOut
from supervisor.cli.terminal_text import echo
from supervisor.store.instance import Instance
from supervisor.store.projects import DEFAULT_TASK_TOKENS, ProjectConfig, ProjectError, ProjectRegistry
from supervisor.store.tasks.models import TaskError, TaskState
from supervisor.store.tasks.sqlite_queue import open_queue
from supervisor.work.git_fetch import folder_mb
from supervisor.work.mirror import (
    SOURCE_REFS,
    FetchReport,
    create_mirror,
    default_branch_of,
    fetch,
    project_lock,
    redact,
)

DEFAULTS = ProjectConfig(name="x", source="x")


def _registry(home: Path | None) -> ProjectRegistry:
    return ProjectRegistry(Instance.locate(home).projects)


def _say_for(as_json: bool) -> Callable[[str], None] | None:
    """Progress on stderr for a person; none under --json (stdout holds one document)."""

    def say(message: str) -> None:
        echo(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", err=True)

    return None if as_json else say


def describe(registry: ProjectRegistry, config: ProjectConfig) -> ProjectOut:
    """The project as `show` and `list` print it, read from its config and its mirror."""
    mirror = registry.mirror(config.name)
    present = (mirror / "HEAD").is_file()
    git = Git(mirror)
    return ProjectOut(
        config=config.model_copy(update={"source": redact(config.source)}),
        folder=str(registry.folder(config.name)),
        mirror=str(mirror),
        source=redact(config.source),
        head=git.ref_value(f"refs/heads/{config.default_branch}") if present else None,
        refs=len(git.refs(*SOURCE_REFS)) if present else 0,
        size_mb=round(folder_mb(mirror), 3),
    )


def _render(project: ProjectOut) -> str:
    config = project.config
    lines = [
        f"project        {config.name}",
        f"source         {project.source}",
        f"default branch {config.default_branch} at {project.head[:12] if project.head else '(missing: fetch)'}",
        f"mirror         {project.mirror} ({project.refs} refs, {project.size_mb:.1f} MB)",
        f"test command   {shlex.join(config.test_command)}",
        f"image          {config.image or '(the agent image)'}",
        f"per task       {config.task_tokens} tokens, {config.task_deadline_s:g} s; tests {config.test_deadline_s:g} s",
        f"limits         mirror {config.max_mirror_mb} MB, {config.max_files} files; test container "
        f"{config.limits.memory_mb} MB, {config.limits.cpus:g} cpus, {config.limits.pids} pids",
    ]
    return "\n".join(lines)


def _render_fetch(report: FetchReport) -> str:
    head = report.head[:12] if report.head else "missing"
    lines = [
        f"fetched {report.source}: {report.refs} refs, {report.default_branch} at {head}, "
        f"{report.size_mb:.1f} MB in {report.seconds:.1f} s"
    ]
    return "\n".join(lines + [f"note: {note}" for note in report.notes])


@click.group("project")
def project_group() -> None:
    """Repositories the agent works on: each a config and the supervisor's own bare mirror."""


@project_group.command("add")
@click.argument("name")
@click.argument("source")
@click.option("--branch", default=None, help="The branch tasks start from (default: the source's HEAD branch).")
@click.option(
    "--test-command",
    default=shlex.join(DEFAULTS.test_command),
    show_default=True,
    help="How the project's tests run (pytest; split like a shell would).",
)
@click.option("--image", default=None, help="Image the tests run in (default: the agent image; docs/projects.md).")
@click.option("--task-tokens", type=click.IntRange(min=1000), default=DEFAULT_TASK_TOKENS, show_default=True)
@click.option("--task-deadline", type=click.FloatRange(min=0, min_open=True), default=DEFAULTS.task_deadline_s)
@click.option("--test-deadline", type=click.FloatRange(min=0, min_open=True), default=DEFAULTS.test_deadline_s)
@click.option("--max-mirror-mb", type=click.IntRange(min=1), default=DEFAULTS.max_mirror_mb, show_default=True)
@click.option("--max-files", type=click.IntRange(min=1), default=DEFAULTS.max_files, show_default=True)
@home_option
@json_option
def add_cmd(
    name: str,
    source: str,
    branch: str | None,
    test_command: str,
    image: str | None,
    task_tokens: int,
    task_deadline: float,
    test_deadline: float,
    max_mirror_mb: int,
    max_files: int,
    home: Path | None,
    as_json: bool,
) -> None:
    """Register project NAME from SOURCE (a git URL or a local path) and fetch it into a new mirror.

    Refused, leaving nothing behind, when NAME is taken, SOURCE does not answer, the branch is
    missing, its head has submodules or too many files, or the mirror outgrows --max-mirror-mb.
    Git LFS content is not fetched (pointer files stay pointers).
    """
    registry = _registry(home)
    registry.folder(name)  # the name's own clear error before anything else
    try:
        command = shlex.split(test_command)
    except ValueError as exc:
        raise click.BadParameter(f"{exc}; quote it as a shell would", param_hint="--test-command") from exc
    if not command:
        raise click.BadParameter("give the command that runs the tests", param_hint="--test-command")
    say = _say_for(as_json)
    if branch is None:
        with tempfile.TemporaryDirectory(prefix="ouroboros-probe-") as scratch:
            branch = default_branch_of(source, Path(scratch) / "probe.git") or DEFAULTS.default_branch
    config = ProjectConfig(
        name=name,
        source=source,
        default_branch=branch,
        test_command=command,
        image=image,
        task_tokens=task_tokens,
        task_deadline_s=task_deadline,
        test_deadline_s=test_deadline,
        max_mirror_mb=max_mirror_mb,
        max_files=max_files,
    )
    report = create_mirror(registry, config, say)
    project = describe(registry, registry.get(name))
    text = f"{_render_fetch(report)}\n\n{_render(project)}\nconfig: {registry.folder(name) / 'project.toml'}"
    emit(as_json, ProjectAddOut(project=project, fetch=report), text)


@project_group.command("list")
@home_option
@json_option
def list_cmd(home: Path | None, as_json: bool) -> None:
    """Every project of the instance with its source, default branch and mirror size."""
    registry = _registry(home)
    projects = [describe(registry, config) for config in registry.all()]
    rows = [
        f"{p.config.name:<20} {p.config.default_branch:<12} {(p.head or 'missing')[:12]:<12} "
        f"{p.size_mb:>8.1f} MB  {p.source}"
        for p in projects
    ]
    emit(as_json, projects, "\n".join(rows) if rows else "no projects yet; add one with `supervisor project add`")


@project_group.command("show")
@click.argument("name")
@home_option
@json_option
def show_cmd(name: str, home: Path | None, as_json: bool) -> None:
    """One project's config and the state of its mirror."""
    registry = _registry(home)
    project = describe(registry, registry.get(name))
    emit(as_json, project, _render(project))


@project_group.command("fetch")
@click.argument("name")
@home_option
@json_option
def fetch_cmd(name: str, home: Path | None, as_json: bool) -> None:
    """Fetch the project's branches and tags again (forced, pruned); a too-large result keeps the old refs."""
    registry = _registry(home)
    report = fetch(registry, name, _say_for(as_json))
    emit(as_json, report, _render_fetch(report))


@project_group.command("remove")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (required with --json).")
@click.option(
    "--force",
    is_flag=True,
    help="Remove even if tasks of the project are not finished: they are cancelled first.",
)
@home_option
@json_option
def remove_cmd(name: str, yes: bool, force: bool, home: Path | None, as_json: bool) -> None:
    """Delete the project's config and mirror (task branches kept in the mirror go with it).

    Refused while tasks of the project are queued, running or being judged, unless --force, which
    cancels them first. Finished tasks stay in the queue as records.
    """
    registry = _registry(home)
    instance = Instance.locate(home)
    _unfinished(instance, name, force)  # refused before anything is asked or changed
    if not registry.exists(name) and not registry.folder(name).exists():
        registry.get(name)  # the "no project named …" error, with the known names
    folder = registry.folder(name)
    if not yes:
        if as_json:
            raise click.UsageError(f"removing {name} deletes {folder}; pass --yes to confirm")
        click.confirm(f"delete project {name} and its mirror {folder}?", abort=True)
    with project_lock(registry, name):
        if not folder.exists():
            raise ProjectError(f"no project named {name!r}; `supervisor project list` shows the known ones")
        for task_id in _unfinished(instance, name, force):
            _cancel(instance, task_id, f"project {name} was removed")
        registry.remove(name)
    emit(as_json, ProjectRemoveOut(removed=name, folder=str(folder)), f"removed project {name} ({folder})")


def _unfinished(instance: Instance, name: str, force: bool) -> list[int]:
    """Ids of the project's tasks not finished yet; without --force, any is an error."""
    queue = open_queue(instance.tasks_db)
    try:
        unfinished = queue.find(states=[TaskState.QUEUED, TaskState.RUNNING, TaskState.JUDGING], project=name)
    finally:
        queue.close()
    if unfinished and not force:
        ids = ", ".join(str(task.id) for task in unfinished[:20])
        raise ProjectError(
            f"project {name} has {len(unfinished)} unfinished task(s) ({ids}); cancel them with "
            "`supervisor task cancel ID`, or pass --force to cancel them with the project"
        )
    return [task.id for task in unfinished]


def _cancel(instance: Instance, task_id: int, reason: str) -> None:
    queue = open_queue(instance.tasks_db)
    try:
        queue.cancel(task_id, reason)
    except TaskError:
        pass  # finished meanwhile: a record, nothing to cancel
    finally:
        queue.close()


COMMANDS = [project_group]
