"""The fleet's database going away under a node's route: requests refused (never forwarded unmetered),
settlements in flight kept locally until they land, and the node serving again by itself.

These tests stop and start the session's PostgreSQL server; each starts it again before it ends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import anthropic
import pytest

from scripted_model import ScriptedModelServer
from supervisor.route.fleet_budget import FleetBudget, FleetCaps
from supervisor.route.fleet_pending import PendingFile, PendingSettlement
from supervisor.route.ledger_records import Release, iter_records
from tests.fleet.budget_rig import MAX_TOKENS, MODEL, Node, count, slow_scenario, start_node

CAPS = FleetCaps(weekly_tokens=1_000_000, project_tokens=None)


@pytest.fixture
def server_back(pg_cluster) -> Iterator[None]:
    """Whatever a test does to the server, it is running again afterwards."""
    yield
    try:
        pg_cluster.start_server()
    except RuntimeError:
        pass  # already running


def node_for(
    pg_cluster, pg_database: str, tmp_path: Path, delay_ms: int, wait_s: float = 1.0
) -> tuple[Node, ScriptedModelServer]:
    upstream = ScriptedModelServer(slow_scenario(delay_ms=delay_ms)).start()
    node = start_node(
        pg_database, pg_cluster.password, upstream.url, tmp_path / "n1", "n1", CAPS, heartbeat_s=0.5, wait_s=wait_s
    )
    return node, upstream


def client(node: Node) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=node.route.url_tcp, api_key=node.credential, max_retries=0, timeout=60)


def ask(node: Node) -> None:
    client(node).messages.create(model=MODEL, max_tokens=MAX_TOKENS, messages=[{"role": "user", "content": "go"}])


def test_with_the_database_away_requests_are_refused_and_the_node_recovers_by_itself(
    pg_cluster, pg_database: str, tmp_path: Path, open_db, server_back
) -> None:
    node, upstream = node_for(pg_cluster, pg_database, tmp_path, delay_ms=10)
    try:
        ask(node)
        pg_cluster.stop_server()
        for _ in range(3):
            with pytest.raises(anthropic.APIStatusError) as refused:
                ask(node)
            assert refused.value.status_code == 503
            assert "fleet's budget cannot be checked" in str(refused.value)
            assert "nothing was spent" in str(refused.value)
        assert upstream.steps_served == 1  # nothing was forwarded unmetered
        assert node.ledger.totals.open == {}  # the local reservations were released
        pg_cluster.start_server()
        deadline = time.monotonic() + 30
        while True:  # the node serves again without anyone restarting it
            try:
                ask(node)
                break
            except anthropic.APIStatusError:
                assert time.monotonic() < deadline, "the node did not recover"
                time.sleep(0.2)
        assert upstream.steps_served == 2
        db = open_db("check")
        assert count(db, "SELECT sum(tokens) FROM budget_settlements") == 2 * 950
        assert count(db, "SELECT count(*) FROM budget_reservations") == 0
    finally:
        node.stop()
        upstream.stop()


def test_a_settlement_pending_during_an_outage_lands_after(
    pg_cluster, pg_database: str, tmp_path: Path, open_db, server_back
) -> None:
    node, upstream = node_for(pg_cluster, pg_database, tmp_path, delay_ms=2500)
    try:
        answer: list[str] = []
        thread = threading.Thread(target=lambda: answer.append(str(ask(node))))
        thread.start()
        db = open_db("check")
        deadline = time.monotonic() + 20
        while count(db, "SELECT count(*) FROM budget_reservations") == 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        pg_cluster.stop_server()  # the request is in flight: its settlement cannot reach the database
        thread.join(30)
        assert answer, "the request in flight was answered"
        assert len(node.fleet.pending) == 1
        assert PendingFile(node.fleet.pending.path).items()[0].tokens == 950  # durably, on disk
        pg_cluster.start_server()
        deadline = time.monotonic() + 30
        while len(node.fleet.pending):  # the heartbeat lands it
            assert time.monotonic() < deadline, "the pending settlement never landed"
            time.sleep(0.2)
        db = open_db("check-after")
        assert count(db, "SELECT count(*) FROM budget_reservations") == 0
        assert count(db, "SELECT sum(spent) FROM budget_caps") == 950  # real usage, not the worst case
        assert count(db, "SELECT how FROM budget_settlements") == "spent"
        assert not node.fleet.pending.path.exists()
    finally:
        node.stop()
        upstream.stop()


def test_connections_the_server_terminated_are_never_used(
    pg_cluster, pg_database: str, tmp_path: Path, open_db
) -> None:
    # The pool's backoff between two broken connections is about a second: the wait must allow it.
    node, upstream = node_for(pg_cluster, pg_database, tmp_path, delay_ms=10, wait_s=3.0)
    try:
        ask(node)
        admin = open_db("admin")
        with admin.transaction() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid, 10000)) AS n FROM pg_stat_activity WHERE application_name = 'n1'"
            )
        for _ in range(5):
            ask(node)  # no refusal: the pool checks a connection before lending it
        assert count(admin, "SELECT sum(tokens) FROM budget_settlements") == 6 * 950
    finally:
        node.stop()
        upstream.stop()


def test_pending_settlements_survive_a_restart_and_a_torn_line(open_db, tmp_path: Path) -> None:
    first = FleetBudget(open_db("a"), "a", CAPS, tmp_path / "pending.jsonl").open()
    assert first.reserve("r1", "run", MODEL, 2000, Decimal("0.01")) is None
    pending = PendingFile(tmp_path / "pending.jsonl")
    pending.add(PendingSettlement(id="r1", how="spent", tokens=700, usd=Decimal("0.002")))
    with open(tmp_path / "pending.jsonl", "ab") as handle:
        handle.write(b'{"id": "r2", "how": "sp')  # a kill mid-write
    first._stop.set()  # killed: no close, no drop of its holder
    again = FleetBudget(open_db("a2"), "a", CAPS, tmp_path / "pending.jsonl").open()
    try:
        db = open_db("check")
        assert count(db, "SELECT tokens FROM budget_settlements WHERE id = 'r1'") == 700  # landed, not swept
        assert count(db, "SELECT sum(spent) FROM budget_caps") == 700
        assert len(again.pending) == 0 and not (tmp_path / "pending.jsonl").exists()
        assert count(db, "SELECT count(*) FROM budget_holders WHERE node = 'a'") == 1  # its old process: swept
    finally:
        again.close()


def test_no_local_spend_is_left_open_when_the_fleet_refuses(pg_cluster, pg_database, tmp_path: Path) -> None:
    upstream = ScriptedModelServer(slow_scenario(delay_ms=10)).start()
    node = start_node(pg_database, pg_cluster.password, upstream.url, tmp_path / "n", "n", FleetCaps(weekly_tokens=100))
    try:
        with pytest.raises(anthropic.PaymentRequiredError, match="fleet week .* of 100 tokens"):
            ask(node)
        assert node.ledger.totals.open == {} and upstream.steps_served == 0
        releases = [r for _, r in iter_records(node.ledger.path)]
        assert any(isinstance(r, Release) and r.reason == "fleet budget cap" for r in releases)
    finally:
        node.stop()
        upstream.stop()
