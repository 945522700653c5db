"""`supervisor fleet`: the fleet's shared PostgreSQL store (docs/fleet.md). Here: `fleet migrate`."""

from __future__ import annotations

from pathlib import Path

import click
from pydantic import BaseModel, ConfigDict, Field

from supervisor.cli.common import emit, home_option, json_option
from supervisor.store.fleet_settings import open_database
from supervisor.store.instance import Instance


class FleetMigrateOut(BaseModel):
    """What `fleet migrate` did to the fleet database."""

    model_config = ConfigDict(extra="forbid")

    database: str = Field(description="host:port/name of the fleet database (no user, no password).")
    applied: list[str] = Field(description="Migrations applied now, as NNN_name, oldest first; empty: none needed.")
    version: int = Field(description="The database's schema version after the command.")
    known: int = Field(description="The newest schema version this node knows.")


FLEET_JSON: list[tuple[str, type[BaseModel]]] = [("fleet migrate", FleetMigrateOut)]


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


COMMANDS = [fleet_group]
