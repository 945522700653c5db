"""The fleet's nodes: each supervisor registers itself and heartbeats, all in the database's own clock.

A node's row says who it is (host, home, version), when it started and when it last said it is
alive (`heartbeat_at`, set to the database's now()), and whether the operator asked it to drain
(finish its task, claim no more). A heartbeat that updates no row means the node's registration is
gone (an operator removed it): the node must register again before it claims anything.

A node's name is its worker name in the queue and its holder name for the budget: two live
supervisors under one name would take each other's tasks and sweep each other's reservations. So a
registration is refused (NodeNameTaken) while the name's row was heartbeated within `live_s` from
another host or home; the same host and home is the same node restarting.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from supervisor.base.pg.errors import DatabaseError
from supervisor.base.pg.pool import Database
from supervisor.store.fleet_settings import NODE_PATTERN


class NodeNameTaken(DatabaseError):
    """Another live supervisor (another host or home) is registered under this node's name."""


class NodeInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=NODE_PATTERN)
    host: str = Field(min_length=1, max_length=255)
    home: str = Field(min_length=1, max_length=4096)
    version: str = Field(min_length=1, max_length=100)


class Node(NodeInfo):
    started_at: datetime
    heartbeat_at: datetime
    draining: bool


def _node(row: dict[str, object]) -> Node:
    data = dict(row)
    for key in ("started_at", "heartbeat_at"):
        moment = data[key]
        if isinstance(moment, datetime):  # a timestamptz column; pydantic refuses anything else
            data[key] = moment.astimezone(UTC)
    return Node.model_validate(data)


def register_node(db: Database, info: NodeInfo, *, live_s: float = 0.0) -> Node:
    """Register (or re-register after a restart) this node: started and alive now; `draining` is kept.

    NodeNameTaken when the name is held by another host or home that heartbeated within `live_s`.
    """
    with db.transaction() as cursor:
        cursor.execute(
            "INSERT INTO nodes (id, host, home, version, started_at, heartbeat_at) VALUES (%s, %s, %s, %s, now(), now())"
            " ON CONFLICT (id) DO UPDATE SET host = EXCLUDED.host, home = EXCLUDED.home, version = EXCLUDED.version,"
            " started_at = now(), heartbeat_at = now()"
            " WHERE (nodes.host = EXCLUDED.host AND nodes.home = EXCLUDED.home)"
            " OR nodes.heartbeat_at < now() - make_interval(secs => %s) RETURNING *",
            (info.id, info.host, info.home, info.version, float(live_s)),
        )
        row = cursor.fetchone()
        if row is None:
            cursor.execute(
                "SELECT host, home, extract(epoch FROM now() - heartbeat_at) AS age FROM nodes WHERE id = %s",
                (info.id,),
            )
            other = cursor.fetchone()
    if row is None and other is not None:
        raise NodeNameTaken(
            f"node name {info.id!r} is in use by {other['host']}:{other['home']} (heartbeat {float(other['age']):.0f} s "
            f"ago); give this node another [fleet] node name, or stop that one (its name is free {live_s:.0f} s "
            "after its last heartbeat)"
        )
    if row is None:  # INSERT … RETURNING always returns the row; a server that does not is not PostgreSQL
        raise DatabaseError(f"registering node {info.id} returned nothing; check the fleet database")
    return _node(row)


def heartbeat(db: Database, node: str) -> bool:
    """Say `node` is alive; False when no row was updated (not registered: register again)."""
    with db.transaction() as cursor:
        cursor.execute("UPDATE nodes SET heartbeat_at = now() WHERE id = %s", (node,))
        return cursor.rowcount == 1


def heartbeat_state(db: Database, node: str) -> bool | None:
    """Say `node` is alive and learn whether it must drain; None when it is not registered (register again)."""
    with db.transaction() as cursor:
        cursor.execute("UPDATE nodes SET heartbeat_at = now() WHERE id = %s RETURNING draining", (node,))
        row = cursor.fetchone()
    return None if row is None else bool(row["draining"])


def set_draining(db: Database, node: str, draining: bool) -> bool:
    """Ask `node` to drain (or stop draining); False when there is no such node."""
    with db.transaction() as cursor:
        cursor.execute("UPDATE nodes SET draining = %s WHERE id = %s", (draining, node))
        return cursor.rowcount == 1


def nodes(db: Database) -> list[Node]:
    with db.transaction() as cursor:
        cursor.execute("SELECT * FROM nodes ORDER BY id")
        return [_node(row) for row in cursor.fetchall()]
