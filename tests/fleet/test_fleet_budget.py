"""Exact fleet-wide caps: nodes reserve each request's worst case in PostgreSQL before forwarding it.

Real PostgreSQL (the throw-away cluster), real HTTP through each node's route, the scripted model
upstream. Several nodes, each with its own pool, never pass a cap together, checked with the
database's own rows at every moment; a killed node's reservations are swept at their worst case once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import anthropic
import pytest

from scripted_model import ScriptedModelServer
from supervisor.base.errors import ConfigError
from supervisor.base.pg.pool import Database
from supervisor.route.fleet_budget import FleetBudget, FleetCaps
from tests.fleet.budget_rig import MAX_TOKENS, MODEL, Node, PeakWatcher, count, slow_scenario, start_node

CAPS = {  # each allows a handful of the 60 requests, the other caps open
    "week tokens": FleetCaps(weekly_tokens=9_000, project_tokens=None),
    "day usd": FleetCaps(weekly_tokens=None, project_tokens=None, day_usd=Decimal("0.03")),
    "project tokens": FleetCaps(weekly_tokens=None, project_tokens=8_000),
    "day tokens": FleetCaps(weekly_tokens=None, project_tokens=None, day_tokens=10_000),
    "all four at once": FleetCaps(
        weekly_tokens=12_000, project_tokens=9_000, day_tokens=11_000, day_usd=Decimal("0.05")
    ),
}


@pytest.fixture
def scripted() -> Iterator[Callable[..., ScriptedModelServer]]:
    servers: list[ScriptedModelServer] = []

    def start(delay_ms: int = 150) -> ScriptedModelServer:
        servers.append(ScriptedModelServer(slow_scenario(delay_ms=delay_ms)).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def nodes(pg_cluster, pg_database: str, tmp_path: Path) -> Iterator[Callable[..., Node]]:
    started: list[Node] = []

    def start(name: str, upstream_url: str, caps: FleetCaps, **options: object) -> Node:
        node = start_node(pg_database, pg_cluster.password, upstream_url, tmp_path / name, name, caps, **options)  # type: ignore[arg-type]
        started.append(node)
        return node

    yield start
    for node in started:
        node.stop()


def ask(url: str | None, credential: str, outcomes: list[str], barrier: threading.Barrier | None = None) -> None:
    client = anthropic.Anthropic(base_url=url, api_key=credential, max_retries=0, timeout=60)
    if barrier is not None:
        barrier.wait()
    try:
        with client.messages.stream(
            model=MODEL, max_tokens=MAX_TOKENS, messages=[{"role": "user", "content": "go"}]
        ) as stream:
            stream.get_final_message()
        outcomes.append("served")
    except anthropic.PaymentRequiredError as exc:
        outcomes.append("refused" if "fleet" in str(exc) else f"local refusal: {exc}")
    except Exception as exc:  # noqa: BLE001 - recorded, so the assertion shows it
        outcomes.append(f"{type(exc).__name__}: {exc}")


@pytest.mark.parametrize("kind", list(CAPS))
def test_concurrent_requests_on_several_nodes_never_pass_a_fleet_cap(scripted, nodes, open_db, kind) -> None:
    upstream = scripted()
    fleet = [nodes(f"node{i}", upstream.url, CAPS[kind]) for i in range(3)]
    for node in fleet:
        node.fleet.charge_project("demo")
    outcomes: list[str] = []
    barrier = threading.Barrier(60)
    threads = [
        threading.Thread(target=ask, args=(fleet[i % 3].route.url_tcp, fleet[i % 3].credential, outcomes, barrier))
        for i in range(60)
    ]
    with PeakWatcher(open_db("watcher")) as watcher:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
    db = open_db("check")
    assert sorted(set(outcomes)) == ["refused", "served"], outcomes
    served = outcomes.count("served")
    assert served == upstream.steps_served >= 3
    assert watcher.samples > 10 and watcher.worst <= 1, watcher.worst  # spent + reserved <= cap, at every sample
    rows = _rows(db)
    assert len(rows) == (4 if kind == "all four at once" else 1)
    assert count(db, "SELECT count(*) FROM budget_reservations") == 0
    assert count(db, "SELECT count(*) FROM budget_settlements WHERE how = 'spent'") == served
    settled = count(db, "SELECT sum(tokens) FROM budget_settlements")
    assert settled == served * 950 == sum(node.ledger.totals.total.tokens for node in fleet)  # fleet = local = served
    for row in rows:
        assert row["spent"] <= row["cap"] and row["reserved"] == 0
        assert row["spent"] == (settled if row["unit"] == "tokens" else served * Decimal("0.00455"))


def _rows(db: Database) -> list[dict[str, object]]:
    with db.transaction() as cursor:
        cursor.execute("SELECT * FROM budget_caps ORDER BY id")
        return cursor.fetchall()


def test_a_killed_nodes_reservations_are_swept_at_worst_case_exactly_once(
    pg_cluster, pg_database: str, scripted, open_db, tmp_path: Path
) -> None:
    upstream = scripted(delay_ms=20_000)  # the answers never come before the kill
    caps = '{"weekly_tokens": 1000000, "project_tokens": null}'
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.fleet.budget_rig", pg_database, pg_cluster.password, upstream.url,
         str(tmp_path / "victim"), "victim", caps, "3"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()},
    )  # fmt: skip
    try:
        assert worker.stdout is not None
        line = worker.stdout.readline().split()
        assert line[:1] == ["ready"], line
        outcomes: list[str] = []
        threads = [threading.Thread(target=ask, args=(line[1], line[2], outcomes), daemon=True) for _ in range(4)]
        for thread in threads:
            thread.start()
        db = open_db("check")
        deadline = time.monotonic() + 30
        while count(db, "SELECT count(*) FROM budget_reservations") < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        worst = count(db, "SELECT sum(tokens) FROM budget_reservations")
        assert count(db, "SELECT count(*) FROM budget_reservations") == 4
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
    time.sleep(3.5)  # past the victim's lease
    sweepers = [
        FleetBudget(open_db(f"n{i}"), f"n{i}", FleetCaps(weekly_tokens=1_000_000), tmp_path / f"p{i}", lease_s=60)
        for i in range(4)
    ]
    gate = threading.Barrier(4)

    def sweep(budget: FleetBudget) -> None:
        gate.wait()
        budget.tick()

    threads = [threading.Thread(target=sweep, args=(b,)) for b in sweepers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert count(db, "SELECT count(*) FROM budget_reservations") == 0
    assert count(db, "SELECT count(*) FROM budget_settlements WHERE how = 'swept' AND node = 'victim'") == 4
    assert count(db, "SELECT count(DISTINCT settled_by) FROM budget_settlements") == 1  # one sweeper did it all
    (row,) = _rows(db)
    assert row["spent"] == worst and row["reserved"] == 0  # charged at worst case, once
    assert count(db, "SELECT count(*) FROM budget_holders WHERE node = 'victim'") == 0
    for budget in sweepers:
        budget.tick()  # nothing is left to sweep: nothing changes
    assert _rows(db)[0]["spent"] == worst


def test_a_stalled_holder_is_swept_and_its_late_settlement_refused(open_db, tmp_path: Path) -> None:
    caps = FleetCaps(weekly_tokens=10_000, project_tokens=None)
    stalled = FleetBudget(open_db("stalled"), "stalled", caps, tmp_path / "a", lease_s=60).open()
    other = FleetBudget(open_db("other"), "other", caps, tmp_path / "b", lease_s=60).open()
    try:
        assert stalled.reserve("r1", "run", MODEL, 3000, Decimal("0.01")) is None
        db = open_db("check")
        with db.transaction() as cursor:  # as if it had been SIGSTOPped past its lease
            cursor.execute(
                "UPDATE budget_holders SET heartbeat_at = now() - interval '61 seconds' WHERE node = 'stalled'"
            )
        other.tick()
        stalled.settle("r1", 100, Decimal("0.001"))  # late: the sweep charged it at its worst case first
        assert stalled.late == 1 and len(stalled.pending) == 0
        (row,) = _rows(db)
        assert (row["spent"], row["reserved"]) == (3000, 0)
        assert stalled.reserve("r2", "run", MODEL, 8000, Decimal("0.01")) is not None  # 3000 + 8000 > 10000
        assert stalled.reserve("r3", "run", MODEL, 7000, Decimal("0.01")) is None  # registered again by itself
        stalled.release("r3")
        assert _rows(db)[0]["reserved"] == 0
    finally:
        stalled.close()
        other.close()


def test_a_cap_set_below_what_is_spent_is_a_clear_error_and_changes_nothing(open_db, tmp_path: Path) -> None:
    budget = FleetBudget(open_db("a"), "a", FleetCaps(weekly_tokens=10_000), tmp_path / "a").open()
    budget.charge_project("demo")
    assert budget.reserve("r1", "run", MODEL, 4000, Decimal(0)) is None
    budget.settle("r1", 3000, Decimal(0))
    assert budget.reserve("r2", "run", MODEL, 2000, Decimal(0)) is None  # 5000 used or held this week
    lower = FleetBudget(open_db("b"), "b", FleetCaps(weekly_tokens=4_000), tmp_path / "b")
    with pytest.raises(ConfigError, match=r"week .*3000 of 10000 tokens spent, 2000 held.*at least 5000"):
        lower.open()
    lower.close()
    again = FleetBudget(open_db("c"), "c", FleetCaps(weekly_tokens=10_000, project_tokens=2_000), tmp_path / "c")
    with pytest.raises(ConfigError, match=r"project demo: 3000 of 100000 tokens spent"):
        again.open()  # a project cap below a project's spend is refused too
    again.close()
    states = {s.id.split(":")[0]: s for s in budget.statuses()}
    assert (states["week"].cap, states["week"].spent, states["week"].reserved) == (10_000, 3000, 2000)
    assert states["project"].cap == 100_000  # nothing changed
    budget.settle("r2", 2000, Decimal(0))
    budget.close()


def test_migrations_run_in_number_order_with_gaps_and_a_number_used_twice_is_refused(tmp_path: Path) -> None:
    from supervisor.base.pg.errors import DatabaseError
    from supervisor.base.pg.migrate import latest, load_migrations

    for name in ("010_budget.sql", "001_queue.sql", "002_more.sql"):
        (tmp_path / name).write_text("SELECT 1;")
    found = load_migrations(tmp_path)
    assert [m.version for m in found] == [1, 2, 10] and latest(found) == 10
    (tmp_path / "010_again.sql").write_text("SELECT 2;")
    with pytest.raises(DatabaseError, match="010 .* used twice; renumber it"):
        load_migrations(tmp_path)
