"""What the operator sees of the fleet (`fleet status`, the console's fleet page, /metrics): one read.

Every age is computed by the database's clock (now() - heartbeat_at), never a node's. A node is
`late` when it has not said it is alive for two heartbeat periods. Spend is what the fleet's budget
holds (migration 010, `budget_caps`: every node's requests reserve there before they are forwarded):
this week's and today's rows (by the database's clock) and every project's, each with what is
spent, what requests in flight still hold, and the cap.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from supervisor.store.fleet_settings import FleetSettings
from supervisor.store.tasks.models import TaskState
from supervisor.store.tasks.priority import UNKNOWN_LANGUAGE

if TYPE_CHECKING:  # psycopg is imported only where a fleet is used (the gate's container has none)
    from supervisor.base.pg.pool import Cursor, Database

RECENT = 20
OPEN_SQL = "('queued', 'running', 'judging')"
SPEND_NOTE = (
    "the fleet's budget (budget_caps): settled spend, reservations of requests in flight, and each cap; "
    "a period or project no request has reached yet shows 0"
)


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NodeStatus(_Out):
    id: str
    host: str
    home: str
    version: str
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age_s: float = Field(description="Seconds since its last heartbeat, by the database's clock.")
    late: bool = Field(description="No heartbeat for two heartbeat periods ([fleet] heartbeat_s).")
    draining: bool = Field(description="Asked to finish its task and claim no more (`fleet drain`).")
    holds: list[int] = Field(description="Tasks it holds now (running or judging).")


class RecentVerdict(_Out):
    task_id: int
    project: str
    title: str = Field(description="Third-party text (an import's title).")
    outcome: TaskState
    worker: str | None = Field(description="The node whose attempt was judged.")
    tokens: int
    at: datetime


class LanguageUse(_Out):
    language: str
    open: int = Field(description="Queued, running or judging tasks of this language.")
    limit: int = Field(description="[fleet.budgets] language_tasks.")


class SpendLine(_Out):
    cap: str = Field(description="weekly_tokens, day_tokens, day_usd, or project_tokens ([fleet.budgets]).")
    scope: str = Field(description="The ISO week (2026-W49), the UTC day (2026-12-07), or the project's name.")
    unit: Literal["tokens", "usd"]
    spent: float = Field(description="Settled spend.")
    reserved: float = Field(description="Held by requests in flight (their worst case).")
    limit: float = Field(description="The cap, as the database holds it.")


class FleetSnapshot(_Out):
    """`supervisor fleet status --json`: the fleet as its database says it is now."""

    database: str = Field(description="host:port/name (no user, no password).")
    now: datetime = Field(description="The database's clock.")
    nodes: list[NodeStatus]
    queue: dict[TaskState, int] = Field(description="Tasks by state (every state, zero included).")
    languages: list[LanguageUse]
    spend: list[SpendLine]
    spend_note: str = Field(description="Where the spend figures come from.")
    recent: list[RecentVerdict] = Field(description="The newest judged tasks, newest first.")


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def open_by_language(cursor: Cursor) -> dict[str, int]:
    """Open tasks (queued, running, judging) per language (the task's metadata; "unknown" without one)."""
    cursor.execute(
        f"SELECT coalesce(metadata->>'language', '{UNKNOWN_LANGUAGE}') AS language, count(*) AS n FROM tasks"
        f" WHERE state IN {OPEN_SQL} GROUP BY 1"
    )
    return {row["language"]: int(row["n"]) for row in cursor.fetchall()}


def _nodes(cursor: Cursor, settings: FleetSettings) -> list[NodeStatus]:
    cursor.execute(
        "SELECT n.*, extract(epoch FROM now() - n.heartbeat_at)::float8 AS age,"
        " coalesce(array_agg(t.id ORDER BY t.id) FILTER (WHERE t.id IS NOT NULL), '{}') AS holds"
        " FROM nodes n LEFT JOIN tasks t ON t.worker = n.id AND t.state IN ('running', 'judging')"
        " GROUP BY n.id ORDER BY n.id"
    )
    return [
        NodeStatus(
            id=row["id"],
            host=row["host"],
            home=row["home"],
            version=row["version"],
            started_at=_utc(row["started_at"]),
            heartbeat_at=_utc(row["heartbeat_at"]),
            heartbeat_age_s=max(0.0, float(row["age"])),
            late=float(row["age"]) > 2 * settings.heartbeat_s,
            draining=row["draining"],
            holds=list(row["holds"]),
        )
        for row in cursor.fetchall()
    ]


def _recent(cursor: Cursor, count: int) -> list[RecentVerdict]:
    cursor.execute(
        "SELECT t.id, t.project, t.title, t.state, t.updated_at, a.worker, coalesce(a.tokens, 0) AS tokens"
        " FROM tasks t LEFT JOIN attempts a ON a.task_id = t.id AND a.number = t.attempts"
        " WHERE t.state IN ('passed', 'failed', 'gave-up', 'infrastructure')"
        " ORDER BY t.updated_at DESC, t.id DESC LIMIT %s",
        (count,),
    )
    return [
        RecentVerdict(
            task_id=row["id"],
            project=row["project"],
            title=row["title"],
            outcome=TaskState(row["state"]),
            worker=row["worker"],
            tokens=int(row["tokens"]),
            at=_utc(row["updated_at"]),
        )
        for row in cursor.fetchall()
    ]


_CAP_NAMES = {("week", "tokens"): "weekly_tokens", ("day", "tokens"): "day_tokens", ("day", "usd"): "day_usd",
              ("project", "tokens"): "project_tokens"}  # fmt: skip


def _spend(cursor: Cursor, settings: FleetSettings) -> list[SpendLine]:
    cursor.execute(
        "SELECT to_char(now() AT TIME ZONE 'UTC', 'IYYY-\"W\"IW') AS week,"
        " to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day"
    )
    period = cursor.fetchone()
    assert period is not None  # a SELECT without FROM returns one row
    cursor.execute(
        "SELECT scope, key, unit, cap, spent, reserved FROM budget_caps"
        " WHERE (scope = 'week' AND key = %(week)s) OR (scope = 'day' AND key = %(day)s) OR scope = 'project'"
        " ORDER BY CASE scope WHEN 'week' THEN 0 WHEN 'day' THEN 1 ELSE 2 END, key, unit",
        {"week": period["week"], "day": period["day"]},
    )
    lines = [
        SpendLine(
            cap=_CAP_NAMES.get((r["scope"], r["unit"]), f"{r['scope']}_{r['unit']}"),
            scope=r["key"],
            unit=r["unit"],
            spent=float(r["spent"]),
            reserved=float(r["reserved"]),
            limit=float(r["cap"]),
        )
        for r in cursor.fetchall()
    ]
    if not any(line.cap == "weekly_tokens" for line in lines):
        limit = float(settings.budgets.weekly_tokens)
        lines.insert(
            0, SpendLine(cap="weekly_tokens", scope=period["week"], unit="tokens", spent=0, reserved=0, limit=limit)
        )
    return lines


def spend_text(line: SpendLine) -> str:
    """`12,345 of 5,000,000 tokens (+950 held)` or `$1.23 of $40.00 (+$0.05 held)`."""
    if line.unit == "usd":
        said = f"${line.spent:,.2f} of ${line.limit:,.2f}"
        return said + (f" (+${line.reserved:,.2f} held)" if line.reserved else "")
    said = f"{line.spent:,.0f} of {line.limit:,.0f} tokens"
    return said + (f" (+{line.reserved:,.0f} held)" if line.reserved else "")


def read_snapshot(db: Database, settings: FleetSettings, recent: int = RECENT) -> FleetSnapshot:
    """The whole picture in one transaction (one consistent view of every table)."""
    with db.transaction() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cursor.execute("SELECT now() AS now")
        now_row = cursor.fetchone()
        assert now_row is not None
        nodes = _nodes(cursor, settings)
        cursor.execute("SELECT state, count(*) AS n FROM tasks GROUP BY state")
        counts = {TaskState(r["state"]): int(r["n"]) for r in cursor.fetchall()}
        languages = open_by_language(cursor)
        spend = _spend(cursor, settings)
        verdicts = _recent(cursor, recent)
    limit = settings.budgets.language_tasks
    return FleetSnapshot(
        database=db.where,
        now=_utc(now_row["now"]),
        nodes=nodes,
        queue={state: counts.get(state, 0) for state in TaskState},
        languages=[LanguageUse(language=k, open=v, limit=limit) for k, v in sorted(languages.items())],
        spend=spend,
        spend_note=SPEND_NOTE,
        recent=verdicts,
    )
