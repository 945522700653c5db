"""The fleet database's plumbing on a real PostgreSQL: connections, errors said clearly, migrations, text."""

from __future__ import annotations

import json
import os
import resource
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from supervisor.base.errors import ConfigError
from supervisor.base.pg import text_codec
from supervisor.base.pg.errors import DatabaseError, DatabaseUnavailable, SchemaMismatch
from supervisor.base.pg.migrate import check_schema, latest, load_migrations, migrate, schema_version
from supervisor.base.pg.pool import Database
from supervisor.cli import main
from supervisor.store.fleet_nodes import NodeInfo, heartbeat, nodes, register_node, set_draining
from supervisor.store.fleet_settings import FleetSettings
from supervisor.store.tasks.models import NewTask, TaskError, TaskState
from supervisor.store.tasks.pg_insert import CHUNK
from supervisor.store.tasks.pg_queue import PostgresTaskQueue
from supervisor.store.tasks.pg_rows import TaskExtras
from tests.pg_cluster import _free_port
from tests.tasks.queue_specs import new_task


def test_a_wrong_password_is_one_clear_error(pg_cluster, pg_database: str) -> None:
    with pytest.raises(DatabaseError, match="refused the password.*password_env or password_file") as caught:
        Database(pg_database, password="not-it", application_name="n").open()
    assert not isinstance(caught.value, DatabaseUnavailable) and "not-it" not in str(caught.value)


def test_an_unreachable_host_is_unavailable_not_a_crash() -> None:
    url = f"postgresql://fleet@127.0.0.1:{_free_port()}/fleet"
    with pytest.raises(DatabaseUnavailable, match="cannot reach the fleet database 127.0.0.1.*start PostgreSQL"):
        Database(url, password="x", application_name="n", connect_timeout_s=2).open()


def test_a_missing_database_says_to_create_it(pg_cluster) -> None:
    with pytest.raises(DatabaseError, match="does not exist.*createdb.*supervisor fleet migrate"):
        Database(pg_cluster.url("no_such_db"), password=pg_cluster.password, application_name="n").open()


def test_a_password_never_goes_in_the_toml(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="holds a password"):
        FleetSettings(database="postgresql://fleet:secret@db/fleet")
    with pytest.raises(ValueError, match="not a postgresql:// URL"):
        FleetSettings(database="mysql://db/fleet")
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    secret.chmod(0o644)
    settings = FleetSettings(database="postgresql://fleet@db/fleet", password_file=secret)
    with pytest.raises(ConfigError, match="group or others may access it.*chmod 600"):
        settings.password()
    secret.chmod(0o600)
    assert settings.password() == "s3cret"
    by_env = FleetSettings(database="postgresql://fleet@db/fleet", password_env="FLEET_PW")
    assert by_env.password({"FLEET_PW": "from-env"}) == "from-env"
    with pytest.raises(ConfigError, match="FLEET_PW, which is not set"):
        by_env.password({})
    with pytest.raises(ValueError, match="at most half of lease_s"):
        FleetSettings(lease_s=60, heartbeat_s=40)


def test_the_defaults_are_the_seeds() -> None:
    settings = FleetSettings()
    assert (settings.lease_s, settings.heartbeat_s, settings.pool_min, settings.pool_max) == (1800, 300, 2, 10)
    assert settings.weights.model_dump() == {"health": 1.0, "impact": 2.0, "solvability": 1.5, "urgency": 0.5}
    assert settings.budgets.model_dump() == {
        "project_tokens": 100_000,
        "language_tasks": 50,
        "weekly_tokens": 5_000_000,
        "day_tokens": None,
        "day_usd": None,
    }
    assert not settings.enabled
    assert FleetSettings(node="n-1").node_name(Path("/x")) == "n-1"
    assert FleetSettings().node_name(Path("/a")) != FleetSettings().node_name(Path("/b"))


def test_migrations_apply_once_even_when_nodes_race(pg_cluster) -> None:
    url = pg_cluster.url(pg_cluster.create_database(pg_cluster.fresh_name()))
    dbs = [Database(url, password=pg_cluster.password, application_name=f"n{i}", min_size=1).open() for i in range(4)]
    try:
        with pytest.raises(SchemaMismatch, match="schema 0, older.*run `supervisor fleet migrate`"):
            check_schema(dbs[0])
        with pytest.raises(SchemaMismatch):
            PostgresTaskQueue(dbs[0])  # a node refuses to run on it
        applied: list[list[str]] = []
        gate = threading.Barrier(4)

        def run(db: Database) -> None:
            gate.wait()
            applied.append([m.name for m in migrate(db)])

        threads = [threading.Thread(target=run, args=(db,)) for db in dbs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        # Each migration is one transaction under the lock: racing nodes may share the work, never repeat it.
        assert len(applied) == 4
        assert sorted(name for names in applied for name in names) == sorted(m.name for m in load_migrations())
        assert check_schema(dbs[1]) == schema_version(dbs[1]) == latest(load_migrations())
    finally:
        for db in dbs:
            db.close()


def test_a_schema_from_a_newer_release_is_refused(open_db: Callable[..., Database], fleet_queue) -> None:
    fleet_queue.add(new_task())
    db = open_db("admin")
    with db.transaction() as cursor:
        cursor.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES (99, 'future', 'x')")
    for call in (check_schema, migrate):
        with pytest.raises(SchemaMismatch, match="this node is older than the database's schema 99; upgrade it"):
            call(db)
    with pytest.raises(SchemaMismatch):
        PostgresTaskQueue(db)
    with db.transaction() as cursor:
        cursor.execute("SELECT count(*) AS n FROM tasks")
        assert cursor.fetchone() == {"n": 1}  # nothing lost


def test_a_changed_migration_is_refused(open_db: Callable[..., Database]) -> None:
    db = open_db("admin")
    with db.transaction() as cursor:
        cursor.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
    with pytest.raises(SchemaMismatch, match="differs from this node's copy"):
        check_schema(db)


def test_any_text_round_trips_through_text_and_jsonb(fleet_queue: PostgresTaskQueue) -> None:
    odd = ["nul\x00", "\ue000", "\ue0000", "\ue000\x00\ue000", "plain", "\\u0000", "é\u2028"]
    for text in odd:
        assert text_codec.unescape(text_codec.escape(text)) == text
    task = fleet_queue.add(new_task("t\x00\ue000").model_copy(update={"fail_to_pass": odd, "body": "\x00" * 3}))
    again = fleet_queue.get(task.id)
    assert again.fail_to_pass == odd and again.title == "t\x00\ue000" and again.body == "\x00" * 3
    assert [t.id for t in fleet_queue.find(project="demo")] == [task.id]
    with fleet_queue.db.transaction() as cursor:  # real text is stored as it is: readable, queryable
        cursor.execute("SELECT count(*) AS n FROM tasks WHERE fail_to_pass ? 'plain'")
        assert cursor.fetchone() == {"n": 1}


def test_a_task_for_an_unknown_project_queues_nothing(fleet_queue: PostgresTaskQueue) -> None:
    with pytest.raises(TaskError, match="no project 'ghost' in the fleet.*nothing was queued"):
        fleet_queue.add_many([new_task("ok"), new_task("lost", project="ghost")])
    assert fleet_queue.find() == []
    with pytest.raises(TaskError, match="not a project name"):
        fleet_queue.add_project("Bad Name", "x")


def test_an_add_of_many_chunks_is_all_or_nothing_and_in_order(fleet_queue: PostgresTaskQueue) -> None:
    count = CHUNK * 2 + 100  # three INSERTs
    news = [new_task(f"t{n}", external_id=f"i{n}", project="alpha" if n % 3 else "demo") for n in range(count)]
    for late in (new_task("lost", project="ghost"), new_task("again", external_id="i0")):
        with pytest.raises(TaskError, match="no project 'ghost'|'i0' of project 'demo' is given twice"):
            fleet_queue.add_many([*news, late])
        assert fleet_queue.counts()[TaskState.QUEUED] == 0

    def failing(_cursor: object) -> Iterator[list[tuple[NewTask, TaskExtras]]]:
        yield [(new, TaskExtras()) for new in news[:CHUNK]]
        raise TaskError("the producer found a bad line")

    with pytest.raises(TaskError, match="found a bad line"):
        fleet_queue.add_chunks(failing)
    assert fleet_queue.find() == []
    added = fleet_queue.add_many(iter(news))  # any iterable, read once
    assert [task.title for task in added] == [new.title for new in news]
    ids = [task.id for task in added]
    assert ids == sorted(ids) and len(set(ids)) == count and fleet_queue.get_many(ids[::-1])[0].title == news[-1].title
    assert [task.id for task in fleet_queue.find()] == ids
    with pytest.raises(TaskError, match="'i3' of project 'demo' is already task"):
        fleet_queue.add_many([new_task("new", external_id="new-1"), new_task("old", external_id="i3")])
    assert len(fleet_queue.find()) == count


def test_the_pool_never_hands_out_a_connection_the_server_closed(
    open_db: Callable[..., Database], fleet_queue: PostgresTaskQueue
) -> None:
    victim = PostgresTaskQueue(open_db("victim", min_size=3, max_size=3))
    victim.add(new_task())
    admin = open_db("admin")
    # pg_terminate_backend(pid, timeout) returns once each backend has exited: the connections are closed
    # (without it, the call returns when the signal is sent and a backend may still answer a moment).
    for _ in range(3):
        with admin.transaction() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid, 10000)) AS n FROM pg_stat_activity WHERE application_name = 'victim'"
            )
            assert cursor.fetchone()["n"] >= 1  # type: ignore[index]
        for _ in range(5):  # more calls than connections: each one taken from the pool is checked first
            assert victim.counts()[TaskState.QUEUED] == 1
    claim = victim.claim("w", 60)
    assert claim is not None and victim.release(claim, "done")


def test_the_pool_checks_connections_whose_descriptors_are_past_select_s_limit(
    open_db: Callable[..., Database], fleet_queue: PostgresTaskQueue
) -> None:
    """A node with many files open (a raised RLIMIT_NOFILE, as in a container) gets sockets numbered
    past 1024, which select() cannot watch: the check still lends live connections and replaces the
    ones the server closed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"the hard limit of open files is {hard}; the test needs 2048")
    resource.setrlimit(resource.RLIMIT_NOFILE, (2048, hard))
    filler: list[int] = []
    try:
        while len(filler) < 1100:
            filler.append(os.open(os.devnull, os.O_RDONLY))
        victim = PostgresTaskQueue(open_db("crowded", min_size=2, max_size=2, wait_s=3))
        with victim.db.transaction() as cursor:
            cursor.execute("SELECT 1 AS one")
        victim.add(new_task())
        admin = open_db("admin")
        with admin.transaction() as cursor:  # returns once the backends have exited (see the test above)
            cursor.execute(
                "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE application_name = 'crowded'"
            )
        for _ in range(4):
            assert victim.counts()[TaskState.QUEUED] == 1
        claim = victim.claim("w", 60)
        assert claim is not None and victim.release(claim, "done")
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_live_connection_with_unasked_news_is_checked_and_still_lent(
    open_db: Callable[..., Database], pg_database: str, pg_cluster
) -> None:
    """A readable idle socket is not proof of death: a NOTIFY makes it readable too, and the full check
    then finds the connection alive (and the pool lends it, not a new one)."""
    db = open_db("listener", min_size=1, max_size=1)
    with db.connection() as conn:
        conn.autocommit = True
        conn.execute("LISTEN wake")
        pid = conn.info.backend_pid
        conn.autocommit = False
    with psycopg.connect(pg_database, password=pg_cluster.password, autocommit=True) as other:
        other.execute("NOTIFY wake, 'hello'")
    for _ in range(3):
        with db.transaction() as cursor:
            cursor.execute("SELECT pg_backend_pid() AS pid")
            assert cursor.fetchone()["pid"] == pid  # type: ignore[index]


def test_a_database_that_goes_away_refuses_clearly_and_comes_back(pg_cluster, open_db, fleet_queue) -> None:
    node = PostgresTaskQueue(open_db("node", min_size=1, max_size=2, wait_s=2))
    task = node.add(new_task())
    pg_cluster.stop_server()
    try:
        with pytest.raises(DatabaseUnavailable, match="nothing was changed, the node tries again"):
            node.claim("w", 60)
    finally:
        pg_cluster.start_server()
    claim = node.claim("w", 60)  # the same handle recovers by itself
    assert claim is not None and claim.task_id == task.id and claim.fence == 1


def test_nodes_register_and_heartbeat_in_the_databases_clock(open_db: Callable[..., Database]) -> None:
    db = open_db("n")
    info = NodeInfo(id="node-1", host="h1", home="/srv/home", version="0.1.0")
    first = register_node(db, info)
    assert first.heartbeat_at >= first.started_at and not first.draining
    assert heartbeat(db, "node-1") is True and heartbeat(db, "ghost") is False
    assert set_draining(db, "node-1", True) and not set_draining(db, "ghost", True)
    again = register_node(db, info.model_copy(update={"version": "0.2.0"}))
    assert again.draining and again.version == "0.2.0" and again.started_at >= first.started_at
    with db.transaction() as cursor:
        cursor.execute("SELECT now() AS now")
        now = cursor.fetchone()["now"]  # type: ignore[index]
    assert [n.id for n in nodes(db)] == ["node-1"] and nodes(db)[0].heartbeat_at <= now


def _instance(tmp_path: Path, url: str) -> Path:
    home = tmp_path / "home"
    (home / "repo.git").mkdir(parents=True)
    (home / "ouroboros.toml").write_text(f'[fleet]\ndatabase = "{url}"\npassword_env = "FLEET_TEST_PW"\n')
    return home


def test_fleet_migrate_command(pg_cluster, tmp_path: Path) -> None:
    url = pg_cluster.url(pg_cluster.create_database(pg_cluster.fresh_name()))
    home = _instance(tmp_path, url)
    runner = CliRunner()
    env = {"FLEET_TEST_PW": pg_cluster.password}
    first = runner.invoke(main, ["fleet", "migrate", "--home", str(home), "--json"], env=env)
    assert first.exit_code == 0, first.output
    out = json.loads(first.output)
    every = load_migrations()
    assert out["applied"] == [f"{m.version:03d}_{m.name}" for m in every]
    assert out["version"] == out["known"] == latest(every)
    again = runner.invoke(main, ["fleet", "migrate", "--home", str(home)], env=env)
    assert again.exit_code == 0 and "nothing to apply" in again.output
    wrong = runner.invoke(main, ["fleet", "migrate", "--home", str(home)], env={"FLEET_TEST_PW": "nope"})
    assert wrong.exit_code == 1 and "refused the password" in wrong.output and "Traceback" not in wrong.output
    unset = runner.invoke(main, ["fleet", "migrate", "--home", str(home), "--json"], env={"FLEET_TEST_PW": ""})
    assert unset.exit_code == 1 and json.loads(unset.output)["error"]["kind"] == "ConfigError"
    with psycopg.connect(url, password=pg_cluster.password) as conn:
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone() == (latest(every),)


def test_an_error_the_server_raises_is_one_clear_database_error_and_a_repeated_key_stays_the_callers(
    open_db: Callable[..., Database], fleet_queue: PostgresTaskQueue
) -> None:
    task = fleet_queue.add(new_task(external_id="i-1"))
    admin = open_db("admin")
    with admin.transaction() as cursor:
        cursor.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'tasks are read-only for maintenance'; END $$"
        )
        cursor.execute("CREATE TRIGGER refuse BEFORE UPDATE ON tasks FOR EACH ROW EXECUTE FUNCTION refuse()")
    with pytest.raises(DatabaseError, match="failed: tasks are read-only for maintenance") as caught:
        fleet_queue.claim("w", 60)
    assert not isinstance(caught.value, DatabaseUnavailable)
    with pytest.raises(DatabaseError, match="read-only for maintenance"):
        fleet_queue.cancel(task.id, "no")
    with admin.transaction() as cursor:
        cursor.execute("DROP TRIGGER refuse ON tasks")
    with pytest.raises(psycopg.errors.UniqueViolation), fleet_queue.db.transaction() as cursor:  # the caller's own
        cursor.execute("INSERT INTO projects (name, source) VALUES ('demo', 'x')")
    claim = fleet_queue.claim("w", 60)  # the same handle goes on
    assert claim is not None and claim.task_id == task.id
