"""Fixtures of the task tests: one `queue_spec` per implementation of the TaskQueue contract."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from supervisor.store.tasks.queue import TaskQueue
from tests.tasks.queue_specs import QueueSpec

KINDS = ["sqlite"]  # the fleet's PostgreSQL queue joins here


def _spec(kind: str, folder: Path) -> QueueSpec:
    if kind == "sqlite":
        return QueueSpec("sqlite", str(folder / "tasks.sqlite3"))
    raise ValueError(kind)


@pytest.fixture(params=KINDS)
def queue_spec(request: pytest.FixtureRequest, tmp_path: Path) -> QueueSpec:
    return _spec(request.param, tmp_path)


@pytest.fixture
def queue(queue_spec: QueueSpec) -> Iterator[TaskQueue]:
    handle = queue_spec.open()
    yield handle
    handle.close()


@pytest.fixture(params=KINDS)
def fresh_queue(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Callable[[], TaskQueue]:
    """A factory of new, empty queues (a property test needs one per example)."""
    kind = request.param

    def make() -> TaskQueue:
        return _spec(kind, tmp_path_factory.mktemp("queue")).open()

    return make
