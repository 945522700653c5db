"""The console's fleet page (/fleet) and the fleet's Prometheus metrics, when [fleet] is configured.

One read of the fleet's database per request (supervisor/store/fleet_status.py) through a small
pool opened on first use; a database that cannot be reached is said on the page (and as
`ouroboros_fleet_up 0`), never a crash. Task titles are third-party text: everything goes
through `safe()`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, Metric

from supervisor.base.errors import OuroborosError
from supervisor.console.html import page, table
from supervisor.console.text import safe
from supervisor.console.view import InstanceView
from supervisor.store.fleet_status import spend_text

if TYPE_CHECKING:  # psycopg is imported only when a fleet is configured
    from supervisor.base.pg.pool import Database
    from supervisor.store.fleet_status import FleetSnapshot


class FleetView:
    """The fleet as this instance's console sees it; None when [fleet] has no database."""

    def __init__(self, view: InstanceView) -> None:
        self.view = view
        self._db: Database | None = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.view.config().fleet.enabled

    def snapshot(self) -> FleetSnapshot | str | None:
        """The snapshot; a sentence when the database cannot be read; None when there is no fleet."""
        settings = self.view.config().fleet
        if not settings.enabled:
            return None
        from supervisor.base.pg.migrate import check_schema
        from supervisor.store.fleet_settings import open_database
        from supervisor.store.fleet_status import read_snapshot

        with self._lock:
            try:
                if self._db is None:
                    small = settings.model_copy(update={"pool_min": 1, "pool_max": 2})
                    self._db = open_database(small, self.view.instance.home)
                    check_schema(self._db)
                return read_snapshot(self._db, settings)
            except OuroborosError as exc:
                if self._db is not None:
                    self._db.close()
                self._db = None  # opened (and checked) again on the next request
                return str(exc)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _age(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def fleet_page(fleet: FleetView) -> str | None:
    """The page; None when there is no fleet (the server answers 404)."""
    snap = fleet.snapshot()
    if snap is None:
        return None
    if isinstance(snap, str):
        return page("Fleet", f'<p class="warning" id="fleet-error">the fleet database cannot be read: {safe(snap)}</p>')
    nodes = [
        (
            safe(n.id),
            safe(n.host),
            safe(n.version),
            f'<span class="{"late" if n.late else "ok"}">{_age(n.heartbeat_age_s)} ago</span>',
            "draining" if n.draining else "",
            ", ".join(str(task) for task in n.holds),
        )
        for n in snap.nodes
    ]
    queue = [(safe(state.value), str(count)) for state, count in snap.queue.items()]
    languages = [(safe(u.language), f"{u.open} of {u.limit}") for u in snap.languages]
    spend = [(safe(s.cap), safe(s.scope), safe(spend_text(s))) for s in snap.spend]
    recent = [
        (str(v.task_id), safe(v.project), safe(v.title, 200), safe(v.outcome.value), safe(v.worker or ""),
         f"{v.tokens:,}", safe(v.at.strftime("%Y-%m-%d %H:%M:%S")))
        for v in snap.recent
    ]  # fmt: skip
    body = (
        f"<p>database {safe(snap.database)}; its clock {safe(snap.now.strftime('%Y-%m-%d %H:%M:%S'))} UTC</p>"
        '<section id="fleet-nodes"><h2>Nodes</h2>'
        + table(("node", "host", "version", "last heartbeat", "", "runs"), nodes, "nodes")
        + '</section><section id="fleet-queue"><h2>Queue</h2>'
        + table(("state", "tasks"), queue, "queue")
        + '</section><section id="fleet-limits"><h2>Open tasks per language</h2>'
        + table(("language", "open"), languages, "languages")
        + f"<h2>Spend</h2><p>{safe(snap.spend_note)}</p>"
        + table(("cap", "scope", "spent"), spend, "spend")
        + '</section><section id="fleet-recent"><h2>Recent verdicts</h2>'
        + (table(("task", "project", "title", "verdict", "node", "tokens", "at (UTC)"), recent, "recent") if recent else "<p>none yet</p>")
        + "</section>"
    )  # fmt: skip
    return page("Fleet", body)


def fleet_metrics(fleet: FleetView) -> Iterator[Metric]:
    """Per node (heartbeat age, draining, tasks held), the queue by state, the fleet's budget; nothing
    without a fleet."""
    snap = fleet.snapshot()
    if snap is None:
        return
    yield GaugeMetricFamily(
        "ouroboros_fleet_up", "1 when the fleet database answered this scrape.", value=0 if isinstance(snap, str) else 1
    )
    if isinstance(snap, str):
        return
    age = GaugeMetricFamily(
        "ouroboros_fleet_node_heartbeat_age_seconds",
        "Since the node's last heartbeat (database clock).",
        labels=["node"],
    )
    draining = GaugeMetricFamily(
        "ouroboros_fleet_node_draining", "1 while the node is asked to drain.", labels=["node"]
    )
    held = GaugeMetricFamily(
        "ouroboros_fleet_node_tasks_held", "Tasks the node holds (running or judging).", labels=["node"]
    )
    for node in snap.nodes:
        age.add_metric([node.id], node.heartbeat_age_s)
        draining.add_metric([node.id], 1 if node.draining else 0)
        held.add_metric([node.id], len(node.holds))
    tasks = GaugeMetricFamily("ouroboros_fleet_tasks", "The fleet's tasks by state.", labels=["state"])
    for state, count in snap.queue.items():
        tasks.add_metric([state.value], count)
    yield from (age, draining, held, tasks)
    yield from _budget_metrics(snap)


def _budget_metrics(snap: FleetSnapshot) -> Iterator[Metric]:
    """The fleet's budget rows (this week's, today's, every project's): spent, held in flight, cap."""
    labels = ["cap", "scope", "unit"]
    spent = GaugeMetricFamily("ouroboros_fleet_budget_spent", "Settled spend against a fleet cap.", labels=labels)
    reserved = GaugeMetricFamily(
        "ouroboros_fleet_budget_reserved", "Worst case held by requests in flight against a fleet cap.", labels=labels
    )
    limit = GaugeMetricFamily("ouroboros_fleet_budget_limit", "A fleet cap.", labels=labels)
    for line in snap.spend:
        key = [line.cap, line.scope, line.unit]
        spent.add_metric(key, line.spent)
        reserved.add_metric(key, line.reserved)
        limit.add_metric(key, line.limit)
    yield from (spent, reserved, limit)
