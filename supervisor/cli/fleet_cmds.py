"""`supervisor fleet`: the fleet's shared PostgreSQL store (docs/fleet.md). Here: migrate, status, drain;
the task and project commands are in fleet_task_cmds.py, fleet_import.py and fleet_project_cmds.py."""

from __future__ import annotations

from pathlib import Path

import click
from pydantic import BaseModel, ConfigDict, Field

from supervisor.cli.common import emit, home_option, json_option
from supervisor.cli.fleet_analysis_cmds import fleet_analyse_cmd
from supervisor.cli.fleet_common import open_fleet
from supervisor.cli.fleet_contract import (
    FleetAnalyseOut,
    FleetDrainOut,
    FleetImportOut,
    FleetProjectOut,
    FleetTaskOut,
    FleetTaskShowOut,
)
from supervisor.cli.fleet_import import fleet_import_cmd
from supervisor.cli.fleet_project_cmds import fleet_project_group
from supervisor.cli.fleet_task_cmds import fleet_add_cmd, fleet_task_group, fleet_tasks_cmd
from supervisor.store.fleet_settings import open_database
from supervisor.store.fleet_status import FleetSnapshot, read_snapshot, spend_text
from supervisor.store.instance import Instance
from supervisor.store.tasks.models import TaskError


class FleetMigrateOut(BaseModel):
    """What `fleet migrate` did to the fleet database."""

    model_config = ConfigDict(extra="forbid")

    database: str = Field(description="host:port/name of the fleet database (no user, no password).")
    applied: list[str] = Field(description="Migrations applied now, as NNN_name, oldest first; empty: none needed.")
    version: int = Field(description="The database's schema version after the command.")
    known: int = Field(description="The newest schema version this node knows.")


FLEET_JSON: list[tuple[str, type[BaseModel]]] = [
    ("fleet migrate", FleetMigrateOut),
    ("fleet status", FleetSnapshot),
    ("fleet add; fleet tasks (an array of these)", FleetTaskOut),
    ("fleet import", FleetImportOut),
    ("fleet task show", FleetTaskShowOut),
    ("fleet analyse", FleetAnalyseOut),
    ("fleet drain", FleetDrainOut),
    ("fleet project add; fleet project list (an array of these)", FleetProjectOut),
]


@click.group("fleet")
def fleet_group() -> None:
    """The fleet: supervisors on many machines sharing one task queue on PostgreSQL ([fleet] in ouroboros.toml)."""


@fleet_group.command("migrate")
@home_option
@json_option
def migrate_cmd(home: Path | None, as_json: bool) -> None:
    """Bring the fleet database's schema up to this node's; safe while other nodes migrate too."""
    from supervisor.base.pg.migrate import latest, load_migrations, migrate, schema_version  # psycopg: only when used

    instance = Instance.locate(home)
    with open_database(instance.config().fleet, instance.home) as db:
        done = migrate(db)
        out = FleetMigrateOut(
            database=db.where,
            applied=[f"{m.version:03d}_{m.name}" for m in done],
            version=schema_version(db),
            known=latest(load_migrations()),
        )
    text = (
        f"applied {', '.join(out.applied)}; {out.database} is at schema {out.version}"
        if out.applied
        else f"{out.database} is at schema {out.version} already; nothing to apply"
    )
    emit(as_json, out, text)


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.0f}m" if seconds < 7200 else f"{seconds / 3600:.1f}h"


def render_status(snap: FleetSnapshot) -> str:
    lines = [f"fleet database {snap.database}  (its clock: {snap.now.isoformat(timespec='seconds')})", "nodes:"]
    for node in snap.nodes:
        flags = ("  DRAINING" if node.draining else "") + ("  LATE" if node.late else "")
        holds = ", ".join(str(task) for task in node.holds) or "-"
        lines.append(
            f"  {node.id:<28} {node.host:<20} {node.version:<10} heartbeat {_age(node.heartbeat_age_s)} ago"
            f"  runs {holds}{flags}"
        )
    if not snap.nodes:
        lines.append("  none registered yet")
    lines.append("queue: " + "  ".join(f"{state.value} {count}" for state, count in snap.queue.items()))
    lines.append("open tasks per language (limit each):")
    lines += [f"  {use.language:<16} {use.open} of {use.limit}" for use in snap.languages] or ["  none"]
    lines.append(f"spend ({snap.spend_note}):")
    lines += [f"  {line.cap:<15} {line.scope:<20} {spend_text(line)}" for line in snap.spend]
    return "\n".join(lines)


@fleet_group.command("status")
@home_option
@json_option
def status_cmd(home: Path | None, as_json: bool) -> None:
    """The fleet now: nodes (heartbeat by the database's clock, draining, what each runs), queue, limits, spend."""
    with open_fleet(home) as fleet:
        snap = read_snapshot(fleet.queue.db, fleet.settings)
    emit(as_json, snap, render_status(snap))


@fleet_group.command("drain")
@click.argument("node")
@click.option("--undo", is_flag=True, help="Let the node claim tasks again.")
@home_option
@json_option
def drain_cmd(node: str, undo: bool, home: Path | None, as_json: bool) -> None:
    """Ask NODE to finish the task it runs and claim no more (or, with --undo, to claim again)."""
    from supervisor.store.fleet_nodes import set_draining

    with open_fleet(home) as fleet:
        if not set_draining(fleet.queue.db, node, not undo):
            known = ", ".join(n.id for n in read_snapshot(fleet.queue.db, fleet.settings, 0).nodes) or "none"
            raise TaskError(
                f"no node {node!r} in the fleet (registered: {known}); `supervisor fleet status` lists them"
            )
        holds = [task.id for task, _ in fleet.queue.held_by(node)]
    out = FleetDrainOut(node=node, draining=not undo, holds=holds)
    said = f"node {node} claims tasks again" if undo else f"node {node} is draining: it claims no more tasks"
    emit(as_json, out, said + (f"; it still runs {', '.join(map(str, holds))}" if holds and not undo else ""))


for _command in (
    fleet_add_cmd,
    fleet_tasks_cmd,
    fleet_import_cmd,
    fleet_analyse_cmd,
    fleet_task_group,
    fleet_project_group,
):
    fleet_group.add_command(_command)

COMMANDS = [fleet_group]
