"""`supervisor fleet project add/list`: the projects the fleet's tasks may name, recorded in PostgreSQL.

A project's language (what the per-language task limit counts) is `--language`, else detected
from the files of this node's mirror of the project (its default branch), else "unknown".
"""

from __future__ import annotations

import re
from pathlib import Path

import click

from supervisor.base.git_ops import GitError
from supervisor.cli.common import emit, home_option, json_option
from supervisor.cli.fleet_common import open_fleet
from supervisor.cli.fleet_contract import FleetProjectOut
from supervisor.cli.task_git import mirror_git
from supervisor.store.projects import ProjectError, ProjectRegistry
from supervisor.store.tasks.models import TaskError
from supervisor.store.tasks.priority import LANGUAGE_PATTERN, UNKNOWN_LANGUAGE, detect_language


def local_language(registry: ProjectRegistry, name: str) -> str | None:
    """The language of this node's mirror of `name` (by its files' extensions), None without one."""
    try:
        project = registry.get(name)
        git = mirror_git(registry, name)
        commit = git.rev_parse(project.default_branch)
        if commit is None:
            return None
        return detect_language(entry.path for entry in git.ls_tree(commit) if entry.kind == "blob")
    except (ProjectError, TaskError, GitError):
        return None


def _language(registry: ProjectRegistry, name: str, given: str | None) -> tuple[str, str]:
    if given is not None:
        if not re.match(LANGUAGE_PATTERN, given):
            raise TaskError(f"--language {given!r}: give a lower-case name like python, javascript, go")
        return given, "given"
    detected = local_language(registry, name)
    return (detected, "detected") if detected else (UNKNOWN_LANGUAGE, "unknown")


@click.group("project")
def fleet_project_group() -> None:
    """The fleet's projects (tasks may name only these)."""


@fleet_project_group.command("add")
@click.argument("name")
@click.argument("source")
@click.option("--language", help="The project's language; default: detected from this node's mirror of it.")
@home_option
@json_option
def project_add_cmd(name: str, source: str, language: str | None, home: Path | None, as_json: bool) -> None:
    """Record project NAME (fetched from SOURCE by every node) in the fleet, or update it."""
    with open_fleet(home) as fleet:
        registry = ProjectRegistry(fleet.instance.projects)
        value, origin = _language(registry, name, language)
        config = {"language": value, "language_from": origin}
        fleet.queue.add_project(name, source, config)
    out = FleetProjectOut(name=name, source=source, language=value, language_from=origin)
    emit(as_json, out, f"project {name} is in the fleet ({source}); language {value} ({origin})")


@fleet_project_group.command("list")
@home_option
@json_option
def project_list_cmd(home: Path | None, as_json: bool) -> None:
    """The fleet's projects."""
    from supervisor.store.tasks.pg_fleet import fleet_projects

    with open_fleet(home) as fleet:
        found = fleet_projects(fleet.queue.db)
    outs = [
        FleetProjectOut(
            name=p.name, source=p.source, language=p.language, language_from=str(p.config.get("language_from", "?"))
        )
        for p in found
    ]
    text = "\n".join(f"{p.name:<24} {p.language:<12} {p.source}" for p in outs) if outs else "no projects in the fleet"
    emit(as_json, outs, text)
