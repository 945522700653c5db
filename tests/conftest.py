"""Shared fixtures. Docker and PostgreSQL tests need the real thing: with CI=true a missing one fails them."""

from __future__ import annotations

import os
import uuid

import pytest

from sandbox.engine import DockerEngine
from sandbox.errors import SandboxError


def _no_engine(message: str, what: str = "Docker") -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {message}: {what} tests must run in CI, not skip", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def docker_engine():
    """A connected engine; fails under CI=true, skips elsewhere, when none answers."""
    try:
        engine = DockerEngine.connect()
    except SandboxError as exc:
        _no_engine(f"no Docker engine ({exc})")
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def agent_image(docker_engine) -> str:
    """The agent/gate runtime image tag, built once if missing."""
    from sandbox.images import ensure_agent_image

    return ensure_agent_image(docker_engine)


@pytest.fixture
def sandbox_instance(docker_engine):
    """A unique instance label; whatever a test leaves behind under it is removed afterwards."""
    instance = f"test-{uuid.uuid4().hex[:12]}"
    yield instance
    docker_engine.reconcile(instance=instance)


@pytest.fixture(scope="session", autouse=True)
def _unmount_agent_disks(tmp_path_factory):
    """Supervisors started as root loop-mount size-capped images over their instances' agent areas
    (supervisor/loop/diskcap.py); the mounts outlive a stop on purpose. Unmount this session's at its end."""
    yield
    base = str(tmp_path_factory.getbasetemp())
    import subprocess

    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(base)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", point], capture_output=True, check=False)


@pytest.fixture(scope="session")
def pg_cluster():
    """A throw-away PostgreSQL cluster (tests/pg_cluster.py); fails under CI=true, skips elsewhere, without one."""
    from tests.pg_cluster import start_cluster

    try:
        cluster = start_cluster()
    except (RuntimeError, OSError) as exc:
        _no_engine(f"no PostgreSQL to start ({exc})", "PostgreSQL")
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def pg_schema_template(pg_cluster) -> str:
    """A database with every migration applied, copied (CREATE DATABASE ... TEMPLATE) for each test."""
    from supervisor.base.pg.migrate import migrate
    from supervisor.base.pg.pool import Database

    name = pg_cluster.create_database("schema_template")
    with Database(pg_cluster.url(name), password=pg_cluster.password, application_name="tests", min_size=1) as db:
        migrate(db.open())
    return name


@pytest.fixture
def pg_database(pg_cluster, pg_schema_template) -> str:
    """The URL (no password: pg_cluster.password) of a fresh, migrated database of this test's own."""
    return pg_cluster.url(pg_cluster.create_database(pg_cluster.fresh_name(), pg_schema_template))
