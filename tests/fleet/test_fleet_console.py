"""The console's fleet page and the fleet's metrics on a real PostgreSQL, read over real HTTP and in a
real headless browser: nodes, heartbeats, queue, verdicts; hostile titles stay text; absent without [fleet]."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from supervisor.base.pg.pool import Database
from supervisor.console.server import ConsoleServer
from supervisor.console.view import InstanceView
from supervisor.store.fleet_nodes import NodeInfo, register_node, set_draining
from supervisor.store.instance import Instance
from supervisor.store.tasks.models import TaskVerdict
from supervisor.store.tasks.pg_queue import PostgresTaskQueue
from tests.console.helpers import synthetic_instance
from tests.pg_cluster import _free_port
from tests.tasks.queue_specs import new_task

CHROMIUM = "/usr/bin/chromium"
PW_ENV = "FLEET_CONSOLE_PW"
HOSTILE = "<script>document.title='pwned'</script>\x1b[2J <img src=x onerror=alert(1)> \u202eevil"


def _serve(home: Path) -> ConsoleServer:
    server = ConsoleServer(InstanceView(Instance(home)), "127.0.0.1", 0, None)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def fleet_home(pg_cluster, pg_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    synthetic_instance(home, 1)
    (home / "ouroboros.toml").write_text(f'[fleet]\ndatabase = "{pg_database}"\npassword_env = "{PW_ENV}"\n')
    monkeypatch.setenv(PW_ENV, pg_cluster.password)
    return home


@pytest.fixture
def filled(fleet_queue: PostgresTaskQueue, open_db: Callable[..., Database]) -> PostgresTaskQueue:
    db = fleet_queue.db
    register_node(db, NodeInfo(id="node-a", host="host-a", home="/srv/a", version="1.0"))
    register_node(db, NodeInfo(id="node-b", host="host-b", home="/srv/b", version="1.1"))
    set_draining(db, "node-b", True)
    with db.transaction() as cursor:
        cursor.execute("UPDATE nodes SET heartbeat_at = now() - interval '2 hours' WHERE id = 'node-b'")
    first = fleet_queue.add(new_task(title=HOSTILE[:190]))
    fleet_queue.add(new_task(title="second"))
    fleet_queue.add(new_task(title="third"))
    claim = fleet_queue.claim("node-a", 600)
    assert claim is not None and claim.task_id == first.id
    assert fleet_queue.mark_judging(claim, "b" * 40, f"refs/ouroboros/tasks/task-{first.id}-1", "done")
    assert fleet_queue.finish(
        claim, TaskVerdict(outcome="failed", reason="r", base_commit=first.base_commit, tokens=77)
    )
    assert fleet_queue.claim("node-a", 600) is not None
    return fleet_queue


@pytest.fixture
def console(fleet_home: Path, filled: PostgresTaskQueue) -> Iterator[ConsoleServer]:
    server = _serve(fleet_home)
    yield server
    server.shutdown()
    server.server_close()


def test_the_page_and_the_metrics(console: ConsoleServer, filled: PostgresTaskQueue) -> None:
    with filled.db.transaction() as cursor:  # what the fleet's budget holds once requests were made
        cursor.execute(
            "INSERT INTO budget_caps (id, scope, key, unit, cap, spent, reserved)"
            " VALUES ('project:demo:tokens', 'project', 'demo', 'tokens', 100000, 1234, 50)"
        )
    main = httpx.get(console.url).text
    assert 'href="/fleet"' in main
    page = httpx.get(console.url + "fleet")
    assert page.status_code == 200
    html = page.text
    assert "node-a" in html and "node-b" in html and "draining" in html and "120 min ago" in html
    assert "<script>document" not in html and "onerror=alert" not in html.replace(
        "&lt;img src=x onerror=alert(1)&gt;", ""
    )
    assert "&lt;script&gt;" in html and "\x1b" not in html
    assert "1,234 of 100,000 tokens (+50 held)" in html
    text = httpx.get(console.url + "metrics").text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("ouroboros_fleet_up", ())] == 1
    assert samples[("ouroboros_fleet_node_draining", (("node", "node-b"),))] == 1
    assert samples[("ouroboros_fleet_node_draining", (("node", "node-a"),))] == 0
    assert samples[("ouroboros_fleet_node_tasks_held", (("node", "node-a"),))] == 1
    assert 7190 < samples[("ouroboros_fleet_node_heartbeat_age_seconds", (("node", "node-b"),))] < 7300
    assert samples[("ouroboros_fleet_tasks", (("state", "queued"),))] == 1
    assert samples[("ouroboros_fleet_tasks", (("state", "running"),))] == 1
    assert samples[("ouroboros_fleet_tasks", (("state", "failed"),))] == 1
    assert samples[("ouroboros_fleet_tasks", (("state", "passed"),))] == 0
    limits = {dict(key[1])["cap"]: key[1] for key in samples if key[0] == "ouroboros_fleet_budget_limit"}
    assert (
        set(limits) == {"weekly_tokens", "project_tokens"}
        and samples[("ouroboros_fleet_budget_limit", limits["weekly_tokens"])] == 5_000_000
    )
    project = (("cap", "project_tokens"), ("scope", "demo"), ("unit", "tokens"))
    assert samples[("ouroboros_fleet_budget_spent", project)] == 1234
    assert samples[("ouroboros_fleet_budget_reserved", project)] == 50
    assert samples[("ouroboros_fleet_budget_limit", project)] == 100_000
    assert samples[("ouroboros_fleet_budget_spent", limits["weekly_tokens"])] == 0


def test_no_fleet_no_page_and_an_unreachable_database_is_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "plain"
    synthetic_instance(home, 1)
    server = _serve(home)
    try:
        assert httpx.get(server.url + "fleet").status_code == 404
        assert 'href="/fleet"' not in httpx.get(server.url).text
        assert "ouroboros_fleet" not in httpx.get(server.url + "metrics").text
        url = f"postgresql://fleet@127.0.0.1:{_free_port()}/fleet"
        (home / "ouroboros.toml").write_text(f'[fleet]\ndatabase = "{url}"\nconnect_timeout_s = 2\n')
        page = httpx.get(server.url + "fleet", timeout=30)
        assert page.status_code == 200 and "cannot reach the fleet database" in page.text
        assert "ouroboros_fleet_up 0.0" in httpx.get(server.url + "metrics", timeout=30).text
    finally:
        server.shutdown()
        server.server_close()


def test_the_fleet_page_in_a_real_browser(console: ConsoleServer) -> None:
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing (apt-get install chromium; scripts/bootstrap.sh does it as root)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 2000})
            errors: list[str] = []
            dialogs: list[str] = []
            page.on("console", lambda message: errors.append(message.text))
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.goto(console.url)
            page.locator('#fleet-link a[href="/fleet"]').click()
            page.wait_for_url("**/fleet")
            assert page.title() == "Fleet"  # the hostile title's script never ran
            rows = page.locator("#fleet-nodes table.nodes tbody tr")
            assert rows.count() == 2
            assert "node-a" in rows.nth(0).inner_text() and "draining" in rows.nth(1).inner_text()
            assert page.locator("#fleet-nodes span.late").count() == 1
            queue = page.locator("#fleet-queue table.queue").inner_text()
            assert "queued\t1" in queue and "running\t1" in queue and "failed\t1" in queue
            recent = page.locator("#fleet-recent table.recent tbody tr")
            assert recent.count() == 1
            cell = recent.nth(0).locator("td").nth(2).inner_text()
            assert "<script>document.title='pwned'</script>" in cell and "<img src=x" in cell  # shown as text
            assert page.locator("#fleet-recent img").count() == 0 and dialogs == []
            assert "failed" in recent.nth(0).inner_text() and "node-a" in recent.nth(0).inner_text()
            assert errors == [], errors
        finally:
            browser.close()
