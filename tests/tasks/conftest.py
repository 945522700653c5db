"""Fixtures of the task tests: one `queue_spec` per implementation of the TaskQueue contract."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from supervisor.store.tasks.queue import TaskQueue
from tests.tasks.queue_specs import PROJECTS, QueueSpec

# The PostgreSQL runs carry the `postgres` mark: the gate's container has no PostgreSQL (gate.toml).
KINDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def pg_tasks_template(request: pytest.FixtureRequest) -> str:
    """A migrated database that knows the contract tests' projects (a fleet refuses tasks of unknown ones)."""
    from supervisor.base.pg.pool import Database
    from supervisor.store.tasks.pg_queue import PostgresTaskQueue

    cluster = request.getfixturevalue("pg_cluster")
    name = cluster.create_database("tasks_template", request.getfixturevalue("pg_schema_template"))
    db = Database(cluster.url(name), password=cluster.password, application_name="tests", min_size=1).open()
    queue = PostgresTaskQueue(db, owns_database=True)
    for project in PROJECTS:
        queue.add_project(project, f"file:///srv/{project}.git")
    queue.close()
    return name


def _spec(kind: str, folder: Path, request: pytest.FixtureRequest) -> QueueSpec:
    if kind == "sqlite":
        return QueueSpec("sqlite", str(folder / "tasks.sqlite3"))
    if kind == "postgres":
        cluster = request.getfixturevalue("pg_cluster")
        name = cluster.create_database(cluster.fresh_name(), request.getfixturevalue("pg_tasks_template"))
        return QueueSpec("postgres", cluster.url(name), cluster.password)
    raise ValueError(kind)


@pytest.fixture(params=KINDS)
def queue_spec(request: pytest.FixtureRequest, tmp_path: Path) -> QueueSpec:
    return _spec(request.param, tmp_path, request)


@pytest.fixture
def queue(queue_spec: QueueSpec) -> Iterator[TaskQueue]:
    handle = queue_spec.open()
    yield handle
    handle.close()


@pytest.fixture(params=KINDS)
def fresh_queue(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Callable[[], TaskQueue]:
    """A factory of new, empty queues (a property test needs one per example). PostgreSQL: the test's own
    database, emptied for each new queue (a new database per example would take most of the test's time)."""
    kind = request.param
    spec = _spec(kind, tmp_path_factory.mktemp("queue"), request) if kind == "postgres" else None

    def make() -> TaskQueue:
        if spec is None:
            return _spec(kind, tmp_path_factory.mktemp("queue"), request).open()
        queue = spec.open()
        with queue.db.transaction() as cursor:  # type: ignore[attr-defined]
            cursor.execute("TRUNCATE attempts, tasks RESTART IDENTITY")
        return queue

    return make
