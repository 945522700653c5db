"""What every `supervisor fleet` command shares: the instance's [fleet] settings and the fleet's queue."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from supervisor.base.errors import ConfigError
from supervisor.store.fleet_settings import FleetSettings, open_database
from supervisor.store.instance import Instance

if TYPE_CHECKING:  # psycopg is imported only when a fleet command runs (the gate's container has none)
    from supervisor.store.tasks.pg_queue import PostgresTaskQueue


@dataclass(frozen=True)
class Fleet:
    instance: Instance
    settings: FleetSettings
    queue: PostgresTaskQueue


def fleet_settings(instance: Instance) -> FleetSettings:
    settings = instance.config().fleet
    if not settings.enabled:
        raise ConfigError(
            f"no [fleet] database in {instance.home / 'ouroboros.toml'}: this instance keeps the embedded queue "
            '(`supervisor task ...`); to join a fleet set [fleet] database = "postgresql://USER@HOST:PORT/NAME" '
            "(docs/fleet.md)"
        )
    return settings


@contextmanager
def open_fleet(home: Path | None) -> Iterator[Fleet]:
    """The fleet of the instance HOME names: connected, its schema checked (SchemaMismatch says what to run)."""
    from supervisor.store.tasks.pg_queue import PostgresTaskQueue

    instance = Instance.locate(home)
    settings = fleet_settings(instance)
    with open_database(settings, instance.home) as db:
        yield Fleet(instance, settings, PostgresTaskQueue(db))
