"""A hostile review of the fleet: what a paused node, a dropped connection, a restarted server, a
duplicate node name or a hostile input does to a node and to the shared queue (real PostgreSQL)."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from supervisor.base.errors import ConfigError
from supervisor.base.git_ops import GitError
from supervisor.base.pg.errors import DatabaseUnavailable
from supervisor.base.toml_config import validate
from supervisor.loop import fleet_node
from supervisor.loop.wiring import task_queue
from supervisor.store.fleet_nodes import NodeNameTaken, nodes
from supervisor.store.fleet_settings import FleetSettings
from supervisor.store.tasks.models import TaskState
from supervisor.store.tasks.pg_queue import PostgresTaskQueue
from supervisor.work.results_remote import remote_location
from tests.tasks.queue_specs import new_task

pytestmark = pytest.mark.postgres
PASSWORD_ENV = "OUROBOROS_TEST_FLEET_PASSWORD"


def _wired_node(tmp_path: Path, pg_cluster: Any, url: str, monkeypatch: pytest.MonkeyPatch, **fleet: Any) -> Any:
    """The queue, holding and node exactly as `supervisor start` wires them (wiring.task_queue)."""
    monkeypatch.setenv(PASSWORD_ENV, pg_cluster.password)
    settings = FleetSettings(database=url, password_env=PASSWORD_ENV, lease_s=60, heartbeat_s=5, **fleet)
    home = tmp_path / "home"
    home.mkdir(parents=True, exist_ok=True)
    instance = SimpleNamespace(home=home, tasks_db=home / "tasks.sqlite", instance_id="i")
    ctx = SimpleNamespace(config=SimpleNamespace(fleet=settings), instance=instance)
    return task_queue(ctx, charge=lambda project: None)  # type: ignore[arg-type]


def _timed(call: Any) -> float:
    started = time.monotonic()
    try:
        call()
    except DatabaseUnavailable:
        pass
    return time.monotonic() - started


def test_a_stopped_database_never_blocks_the_event_loop_for_long(
    tmp_path: Path, pg_cluster: Any, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop calls the queue and the heartbeat on its one thread: with the server gone, each call
    must fail within about a connect attempt, not wait `pool_wait_s` (30 s by default) every time."""
    queue, _holding, node = _wired_node(tmp_path, pg_cluster, pg_database, monkeypatch)
    assert isinstance(queue, PostgresTaskQueue)
    node.start()
    assert node.reachable and node.may_claim()
    monkeypatch.setattr(fleet_node, "RETRY_S", 0.0)  # every tick retries the heartbeat
    pg_cluster.stop_server()
    try:
        first = _timed(queue.counts)  # a task step meets the outage: the loop pauses task steps
        node.lost_database(DatabaseUnavailable("gone"))
        later = [_timed(node.tick) for _ in range(3)] + [_timed(queue.counts) for _ in range(3)]
        assert not node.reachable and not node.may_claim()
    finally:
        pg_cluster.start_server()
    assert first < 8, f"the first call in an outage blocked the loop {first:.1f} s"
    assert max(later) < 2, f"calls during an outage blocked the loop {[round(x, 1) for x in later]} s"
    node.tick()  # the server is back: the node recovers by itself
    assert node.reachable and node.may_claim() and queue.counts()[TaskState.QUEUED] == 0


def test_a_second_node_with_a_live_nodes_name_is_refused_at_start(
    tmp_path: Path, pg_cluster: Any, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two supervisors configured with one `[fleet] node` name would share a worker name: the second's
    restart recovery would release the first's live task and its budget sweep charge the first's
    requests in flight. The second is refused while the first heartbeats; a dead one's name is free."""
    queue, _holding, first = _wired_node(tmp_path / "a", pg_cluster, pg_database, monkeypatch, node="twin")
    first.start()
    queue.add_project("demo", "file:///srv/demo.git")
    queue.add(new_task())
    held = queue.claim("twin", 60)
    assert held is not None
    with pytest.raises(NodeNameTaken, match=r"'twin' is in use by .*/a/home.*give this node another \[fleet\] node"):
        _wired_node(tmp_path / "b", pg_cluster, pg_database, monkeypatch, node="twin")
    assert [n.home for n in nodes(queue.db)] == [str(tmp_path / "a" / "home")]
    assert queue.get(held.task_id).worker == "twin" and queue.renew(held, 60) is not None
    first.tick()
    assert first.registered and first.may_claim()  # the first node runs on, undisturbed
    with queue.db.transaction() as cursor:  # the first node dies: its heartbeat grows old
        cursor.execute("UPDATE nodes SET heartbeat_at = now() - interval '1 hour'")
    _q, _h, second = _wired_node(tmp_path / "b", pg_cluster, pg_database, monkeypatch, node="twin")
    assert second.registered and [n.home for n in nodes(queue.db)] == [str(tmp_path / "b" / "home")]


@pytest.mark.parametrize(
    ("remote", "said"),
    [
        ("https://bob:s3cr3t@git.example/results.git", "credentials"),
        ("https://token@git.example/results.git", "credentials"),
        ("ssh://git@git.example/results.git", "a path, a file:// URL or an https:// URL"),
        ("git@git.example:results.git", "a path, a file:// URL or an https:// URL"),
        ("--upload-pack=touch /tmp/x", "a path, a file:// URL or an https:// URL"),
    ],
)
def test_a_results_remote_with_credentials_or_another_scheme_is_refused_when_read(remote: str, said: str) -> None:
    """It was accepted and failed only at each push (a warning per task, results never shared), and a
    token in it sat in ouroboros.toml and in every push's command line."""
    with pytest.raises(ConfigError, match=said) as caught:  # as ouroboros.toml is read
        validate(FleetSettings, {"results_remote": remote}, "[fleet]")
    assert "s3cr3t" not in str(caught.value)
    with pytest.raises(GitError, match=said) as pushed:  # and where a push would give it to git
        remote_location(remote)
    assert "s3cr3t" not in str(pushed.value)
