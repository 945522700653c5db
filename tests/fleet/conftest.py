"""Fixtures of the fleet tests: a queue on a fresh database of the test's own, with known projects."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from supervisor.base.pg.pool import Database
from supervisor.store.tasks.pg_queue import PostgresTaskQueue

PROJECTS = ("demo", "alpha")


@pytest.fixture
def open_db(pg_cluster, pg_database: str) -> Iterator[Callable[..., Database]]:
    """Open another Database (a node's pool) on this test's database; all are closed after the test."""
    opened: list[Database] = []

    def make(name: str = "node", **options: object) -> Database:
        db = Database(pg_database, password=pg_cluster.password, application_name=name, **options)  # type: ignore[arg-type]
        opened.append(db.open())
        return db

    yield make
    for db in opened:
        db.close()


@pytest.fixture
def fleet_queue(open_db: Callable[..., Database]) -> PostgresTaskQueue:
    queue = PostgresTaskQueue(open_db("setup"))
    for project in PROJECTS:
        queue.add_project(project, f"file:///srv/{project}.git", {"language": "python"})
    return queue
