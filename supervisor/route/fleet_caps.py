"""The fleet's caps in PostgreSQL: reserve a request's worst case, settle it, sweep dead holders' reservations.

Each call is one short transaction (never held while a request streams). Exactness: a reservation
locks its cap rows (`SELECT … ORDER BY id FOR UPDATE`, always in id order; every path locks a holder,
then reservations, then caps, so no two transactions deadlock), checks `spent + reserved + worst case <= cap` on the locked rows and adds to `reserved`
before the locks go; so no interleaving of requests on any number of nodes can pass a cap.

A reservation row is deleted exactly once, by whoever deletes it first: its settlement (real usage),
its release (nothing spent) or a sweep (its holder stopped heartbeating: charged at its worst case).
Only the deleter moves its amounts, so nothing is counted twice; a settlement that finds its row
gone was swept first and changes nothing (fenced). Schema: migrations/010_fleet_budget.sql.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

from supervisor.base.errors import OuroborosError
from supervisor.base.pg.errors import DatabaseError
from supervisor.base.pg.pool import Cursor, Database

CapScope = Literal["week", "day", "project"]
CapUnit = Literal["tokens", "usd"]
How = Literal["spent", "released", "swept"]


class HolderGone(OuroborosError):
    """This holder was swept (its heartbeat was older than its lease); register again before reserving."""


class CapBelowUse(OuroborosError):
    """A cap was set below what is already spent and reserved in its period."""


@dataclass(frozen=True)
class CapAsk:
    """One cap a request reserves against: its row, its limit (used when the row is new) and the amount."""

    scope: CapScope
    key: str
    unit: CapUnit
    cap: Decimal
    ask: Decimal

    @property
    def id(self) -> str:
        return f"{self.scope}:{self.key}:{self.unit}"


@dataclass(frozen=True)
class CapState:
    """A cap row as the database holds it (and, for a refusal, what the refused request asked)."""

    id: str
    scope: str
    key: str
    unit: str
    cap: Decimal
    spent: Decimal
    reserved: Decimal
    asked: Decimal = Decimal(0)

    def describe(self) -> str:
        unit = "USD" if self.unit == "usd" else "tokens"
        where = {"week": "week", "day": "UTC day", "project": "project"}.get(self.scope, self.scope)
        text = f"fleet {where} {self.key}: {self.spent} of {self.cap} {unit} spent, {self.reserved} held by requests in flight"
        return text + (f", this request may cost up to {self.asked}" if self.asked else "")


@dataclass(frozen=True)
class Held:
    """One request's reservation: its id, its holder, the worst case per unit and what asked for it."""

    id: str
    holder: str
    tokens: int
    usd: Decimal
    run_id: str
    model: str


def _state(row: dict[str, object], asked: Decimal = Decimal(0)) -> CapState:
    return CapState(
        id=str(row["id"]),
        scope=str(row["scope"]),
        key=str(row["key"]),
        unit=str(row["unit"]),
        cap=Decimal(str(row["cap"])),
        spent=Decimal(str(row["spent"])),
        reserved=Decimal(str(row["reserved"])),
        asked=asked,
    )


def _lock(cursor: Cursor, ids: list[str]) -> list[dict[str, object]]:
    cursor.execute("SELECT * FROM budget_caps WHERE id = ANY(%s) ORDER BY id FOR UPDATE", (sorted(ids),))
    return cursor.fetchall()


def _create(cursor: Cursor, asks: list[CapAsk]) -> None:
    cursor.executemany(
        "INSERT INTO budget_caps (id, scope, key, unit, cap) VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
        [(a.id, a.scope, a.key, a.unit, a.cap) for a in sorted(asks, key=lambda a: a.id)],
    )


# One statement, run on its own (autocommit): the cap rows are locked only while the server runs it,
# never across a round trip or a Python thread waiting for its turn (which made every node queue
# behind the hottest row under load). The holder is locked first, then the caps in id order.
_RESERVE = """
WITH h AS (SELECT holder FROM budget_holders WHERE holder = %(holder)s FOR KEY SHARE),
c AS (
    SELECT b.id, b.scope, b.key, b.unit, b.cap, b.spent, b.reserved, v.ask
    FROM budget_caps b JOIN unnest(%(ids)s::text[], %(asks)s::numeric[]) AS v(id, ask) ON b.id = v.id
    WHERE EXISTS (SELECT 1 FROM h)
    ORDER BY b.id FOR UPDATE OF b
),
ok AS (SELECT count(*) = %(n)s AND coalesce(bool_and(spent + reserved + ask <= cap), false) AS fits FROM c),
u AS (
    UPDATE budget_caps b SET reserved = b.reserved + c.ask, updated_at = now()
    FROM c, ok WHERE ok.fits AND b.id = c.id RETURNING b.id
),
i AS (
    INSERT INTO budget_reservations (id, holder, caps, tokens, usd, run_id, model)
    SELECT %(id)s, %(holder)s, %(ids)s, %(tokens)s, %(usd)s, %(run_id)s, %(model)s FROM ok WHERE ok.fits
    RETURNING id
)
SELECT c.id, c.scope, c.key, c.unit, c.cap, c.spent, c.reserved, c.ask,
    (SELECT count(*) FROM h) AS holders, (SELECT count(*) FROM i) AS held
FROM c ORDER BY c.id
"""


def reserve(db: Database, held: Held, asks: list[CapAsk]) -> CapState | None:
    """Hold `held`'s worst case against every cap in `asks`: None when it fits, else the cap it would pass.

    Raises HolderGone when the holder was swept, DatabaseError when the database cannot be used.
    """
    ids = sorted(a.id for a in asks)
    by_id = {a.id: a for a in asks}
    params = {
        "holder": held.holder,
        "ids": ids,
        "asks": [by_id[i].ask for i in ids],
        "n": len(ids),
        "id": held.id,
        "tokens": held.tokens,
        "usd": held.usd,
        "run_id": held.run_id,
        "model": held.model,
    }
    for _ in range(2):
        with db.connection() as conn:
            conn.autocommit = True
            try:
                rows = conn.execute(_RESERVE, params).fetchall()
                if not rows:
                    holders = conn.execute(
                        "SELECT count(*) AS n FROM budget_holders WHERE holder = %s", (held.holder,)
                    ).fetchone()
                    if holders is None or not holders["n"]:
                        raise HolderGone(f"budget holder {held.holder} was swept; it must register again")
            finally:
                conn.autocommit = False
        if rows and rows[0]["held"]:
            return None
        if len(rows) == len(ids):
            for row in rows:
                state = _state(row, Decimal(str(row["ask"])))
                if state.spent + state.reserved + state.asked > state.cap:
                    return state
            raise DatabaseError(f"reservation {held.id} was not held, and no cap refused it; retry")
        with db.transaction() as cursor:  # the first request of a period or project: its rows are made
            _create(cursor, [a for a in asks if a.id not in {r["id"] for r in rows}])
    raise DatabaseError(f"reservation {held.id}: its cap rows could not be made; retry")


_SETTLE = """
WITH r AS (
    DELETE FROM budget_reservations x USING budget_holders h WHERE x.id = %(id)s AND h.holder = x.holder
    RETURNING x.id, x.caps, x.tokens, x.usd, x.created_at, h.node
),
l AS (SELECT b.id, b.unit FROM budget_caps b, r WHERE b.id = ANY(r.caps) ORDER BY b.id FOR UPDATE OF b),
u AS (
    UPDATE budget_caps b SET updated_at = now(),
        reserved = b.reserved - CASE l.unit WHEN 'tokens' THEN r.tokens::numeric ELSE r.usd END,
        spent = b.spent + CASE l.unit WHEN 'tokens' THEN %(tokens)s::numeric ELSE %(usd)s::numeric END
    FROM l, r WHERE b.id = l.id RETURNING b.id
),
s AS (
    INSERT INTO budget_settlements (id, node, settled_by, how, caps, reserved_tokens, reserved_usd, tokens, usd,
        created_at)
    SELECT r.id, r.node, %(by)s, %(how)s, r.caps, r.tokens, r.usd, %(tokens)s, %(usd)s, r.created_at FROM r
    RETURNING id
)
SELECT (SELECT count(*) FROM r) AS ended, (SELECT count(*) FROM u) AS moved
"""


def settle(db: Database, reservation: str, tokens: int, usd: Decimal, *, how: How, by: str) -> bool:
    """End a reservation: its worst case leaves `reserved`, `tokens`/`usd` join `spent` (0 for a release).

    False when the reservation was already ended (a sweep charged it at its worst case first). One
    statement on its own, like `reserve`: the cap rows are locked only while the server runs it.
    """
    params = {"id": reservation, "tokens": tokens, "usd": usd, "by": by, "how": how}
    with db.connection() as conn:
        conn.autocommit = True
        try:
            row = conn.execute(_SETTLE, params).fetchone()
        finally:
            conn.autocommit = False
    return row is not None and bool(row["ended"])


def _record(
    cursor: Cursor, reservation: str, row: dict[str, object], by: str, how: How, tokens: int, usd: Decimal
) -> None:
    cursor.execute(
        "INSERT INTO budget_settlements (id, node, settled_by, how, caps, reserved_tokens, reserved_usd,"
        " tokens, usd, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (reservation, row["node"], by, how, row["caps"], row["tokens"], row["usd"], tokens, usd, row["created_at"]),
    )


def register(db: Database, holder: str, node: str, lease_s: float) -> datetime:
    """Register (or renew) a holder; the database's now(), from which periods are counted."""
    with db.transaction() as cursor:
        cursor.execute(
            "INSERT INTO budget_holders (holder, node, lease_s) VALUES (%s, %s, %s)"
            " ON CONFLICT (holder) DO UPDATE SET heartbeat_at = now(), lease_s = EXCLUDED.lease_s"
            " RETURNING heartbeat_at",
            (holder, node, lease_s),
        )
        row = cursor.fetchone()
    assert row is not None
    moment = row["heartbeat_at"]
    assert isinstance(moment, datetime)
    return moment


def heartbeat(db: Database, holder: str) -> datetime | None:
    """Say the holder is alive: the database's now(), or None when it was swept (register again)."""
    with db.transaction() as cursor:
        cursor.execute(
            "UPDATE budget_holders SET heartbeat_at = now() WHERE holder = %s RETURNING heartbeat_at", (holder,)
        )
        row = cursor.fetchone()
    moment = row["heartbeat_at"] if row else None
    return moment if isinstance(moment, datetime) else None


def sweep(db: Database, by: str, *, node: str | None = None, keep: str | None = None) -> dict[str, int]:
    """Settle at their worst case the reservations of holders past their lease (and, with `node`,
    of that node's other holders: its own earlier processes, besides `keep`). Reservations swept, by holder.
    """
    with db.transaction() as cursor:
        cursor.execute(
            "SELECT holder FROM budget_holders WHERE heartbeat_at < now() - make_interval(secs => lease_s)"
            " OR (node = %s AND holder <> %s) ORDER BY holder FOR UPDATE SKIP LOCKED",
            (node, keep),
        )
        holders = [str(r["holder"]) for r in cursor.fetchall()]
        if not holders:
            return {}
        cursor.execute(
            "DELETE FROM budget_reservations r USING budget_holders h WHERE r.holder = ANY(%s) AND h.holder = r.holder"
            " RETURNING r.id, r.holder, r.caps, r.tokens, r.usd, r.created_at, h.node",
            (holders,),
        )
        ended = cursor.fetchall()
        amounts: dict[str, Decimal] = defaultdict(Decimal)
        units = _units(cursor, sorted({cap for row in ended for cap in row["caps"]}))
        for row in ended:
            for cap in row["caps"]:
                amounts[cap] += Decimal(row["tokens"]) if units[cap] == "tokens" else Decimal(str(row["usd"]))
        ids = sorted(amounts)
        cursor.execute(
            "UPDATE budget_caps c SET reserved = c.reserved - v.amount, spent = c.spent + v.amount, updated_at = now()"
            " FROM unnest(%s::text[], %s::numeric[]) AS v(id, amount) WHERE c.id = v.id",
            (ids, [amounts[i] for i in ids]),
        )
        for row in ended:
            _record(cursor, str(row["id"]), row, by, "swept", int(row["tokens"]), Decimal(str(row["usd"])))
        cursor.execute("DELETE FROM budget_holders WHERE holder = ANY(%s)", (holders,))
    swept: dict[str, int] = dict.fromkeys(holders, 0)
    for row in ended:
        swept[str(row["holder"])] += 1
    return swept


def _units(cursor: Cursor, ids: list[str]) -> dict[str, str]:
    return {str(row["id"]): str(row["unit"]) for row in _lock(cursor, ids)} if ids else {}


def drop_holder(db: Database, holder: str) -> bool:
    """Remove a holder that stops cleanly; False (kept, to be swept) while it still has reservations."""
    with db.transaction() as cursor:
        cursor.execute(
            "DELETE FROM budget_holders h WHERE holder = %s"
            " AND NOT EXISTS (SELECT 1 FROM budget_reservations r WHERE r.holder = h.holder)",
            (holder,),
        )
        return cursor.rowcount == 1


def set_caps(db: Database, asks: list[CapAsk]) -> list[CapState]:
    """Make each cap row in `asks` hold its limit (created when missing); refused whole, nothing changed,
    when a limit is below what its period already spent and reserved.
    """
    ids = [a.id for a in asks]
    with db.transaction() as cursor:
        _create(cursor, asks)
        rows = {str(r["id"]): r for r in _lock(cursor, ids)}
        for ask in asks:
            state = _state(rows[ask.id])
            if ask.cap < state.spent + state.reserved:
                raise CapBelowUse(
                    f"{state.describe()}: a cap of {ask.cap} is below that; raise it to at least "
                    f"{state.spent + state.reserved} (nothing was changed)"
                )
        cursor.execute(
            "UPDATE budget_caps c SET cap = v.cap, updated_at = now()"
            " FROM unnest(%s::text[], %s::numeric[]) AS v(id, cap) WHERE c.id = v.id AND c.cap <> v.cap",
            (ids, [a.cap for a in asks]),
        )
        return [_state(row) for row in _lock(cursor, ids)]


def states(db: Database, ids: list[str] | None = None) -> list[CapState]:
    """Cap rows (all of them, or those in `ids`), for status pages and tests."""
    with db.transaction() as cursor:
        if ids is None:
            cursor.execute("SELECT * FROM budget_caps ORDER BY id")
        else:
            cursor.execute("SELECT * FROM budget_caps WHERE id = ANY(%s) ORDER BY id", (ids,))
        return [_state(row) for row in cursor.fetchall()]
