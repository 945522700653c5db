"""Does the fleet's ledger (budget_settlements in PostgreSQL) equal what the nodes' routes recorded? (test helper)

Each node's own ledger is audited against what its scripted model served (tests/chaos/ledger_audit.py:
every answer recorded with exactly its usage, or cut by a kill and charged at its worst case). The
fleet's ledger must then equal the nodes' ledgers, reservation by reservation (the fleet reservation
carries the local one's id):

- every fleet settlement is of a reservation a node made, with that reservation's worst case;
  `spent`: exactly the usage the node recorded for it; `released`: nothing; `swept` (its holder was
  killed or stalled): its worst case, and no more of those than kills (one request in flight each);
- every answer a node recorded is settled in the fleet (spent, or swept at its worst case);
- a local reservation the fleet never saw was refused by the fleet (released locally) or cut by a kill;
- at the end nothing is reserved, no cap row has spent + reserved above its cap, and each cap's
  `spent` is the sum of the settlements charged to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from supervisor.base.pg.pool import Database
from supervisor.route import LEDGER_FILE_NAME
from supervisor.route.ledger import LedgerEntry, Release, Reservation, iter_records
from supervisor.store.instance import Instance


@dataclass
class Local:
    reserves: dict[str, Reservation] = field(default_factory=dict)
    spends: dict[str, LedgerEntry] = field(default_factory=dict)
    released: dict[str, str] = field(default_factory=dict)  # reservation id -> reason


@dataclass
class FleetAudit:
    settled: dict[str, int] = field(default_factory=dict)  # how -> count
    tokens: int = 0
    problems: list[str] = field(default_factory=list)


def read_local(instance: Instance) -> Local:
    local = Local()
    for _, record in iter_records(instance.state / LEDGER_FILE_NAME):
        if isinstance(record, Reservation):
            local.reserves[record.id] = record
        elif isinstance(record, Release):
            local.released[record.id] = record.reason
        elif isinstance(record, LedgerEntry) and record.reservation is not None:
            local.spends[record.reservation] = record
    return local


def cap_overshoot(db: Database) -> list[str]:
    """Cap rows whose spent + reserved is above the cap now."""
    with db.transaction() as cursor:
        cursor.execute("SELECT id, cap, spent, reserved FROM budget_caps WHERE spent + reserved > cap")
        return [f"{r['id']}: {r['spent']} spent + {r['reserved']} reserved > cap {r['cap']}" for r in cursor.fetchall()]


def audit_fleet_ledger(db: Database, nodes: dict[str, Instance], kills: int) -> FleetAudit:
    locals_ = {name: read_local(instance) for name, instance in nodes.items()}
    with db.transaction() as cursor:
        cursor.execute("SELECT * FROM budget_settlements ORDER BY settled_at")
        settlements = cursor.fetchall()
        cursor.execute("SELECT id, holder FROM budget_reservations")
        still_open = cursor.fetchall()
        cursor.execute("SELECT id, unit, cap, spent, reserved FROM budget_caps")
        caps = cursor.fetchall()
    audit = FleetAudit()
    seen: set[str] = set()
    for row in settlements:
        _check_settlement(row, locals_, audit)
        seen.add(str(row["id"]))
    _check_locals(locals_, seen, audit, kills)
    if audit.settled.get("swept", 0) > kills + 1:  # + 1: the node stopped past its lease may be swept too
        audit.problems.append(f"{audit.settled['swept']} reservations swept, more than {kills} kills explain")
    audit.problems += [f"reservation {r['id']} of {r['holder']} is still open at the end" for r in still_open]
    for cap in caps:
        if cap["spent"] + cap["reserved"] > cap["cap"]:
            audit.problems.append(f"{cap['id']}: {cap['spent']} + {cap['reserved']} is above its cap {cap['cap']}")
        if cap["unit"] == "tokens":
            charged = sum(int(s["tokens"]) for s in settlements if cap["id"] in s["caps"])
            if Decimal(charged) != cap["spent"]:
                audit.problems.append(f"{cap['id']}: spent {cap['spent']}, but its settlements add up to {charged}")
    return audit


def _check_settlement(row: dict[str, Any], locals_: dict[str, Local], audit: FleetAudit) -> None:
    how, rid, tokens = str(row["how"]), str(row["id"]), int(row["tokens"])
    audit.settled[how] = audit.settled.get(how, 0) + 1
    audit.tokens += tokens
    local = locals_.get(str(row["node"]))
    held = local.reserves.get(rid) if local else None
    if local is None or held is None:
        audit.problems.append(f"fleet settlement {rid} ({how}) of {row['node']}: no node reserved it")
        return
    if int(row["reserved_tokens"]) != held.usage.total_tokens:
        audit.problems.append(f"{rid}: the fleet held {row['reserved_tokens']}, the node {held.usage.total_tokens}")
    spend = local.spends.get(rid)
    if how == "spent" and (spend is None or spend.usage.total_tokens != tokens):
        audit.problems.append(f"{rid}: the fleet charged {tokens}, the node recorded {spend and spend.usage}")
    elif how == "released" and tokens != 0:
        audit.problems.append(f"{rid}: released in the fleet but charged {tokens}")
    elif how == "swept" and tokens != int(row["reserved_tokens"]):
        audit.problems.append(f"{rid}: swept at {tokens}, not at its worst case {row['reserved_tokens']}")


def _check_locals(locals_: dict[str, Local], seen: set[str], audit: FleetAudit, kills: int) -> None:
    unseen = 0
    for name, local in locals_.items():
        for rid, spend in local.spends.items():
            if rid in seen:
                continue
            if spend.message_id is not None:
                audit.problems.append(f"{name}: answer {spend.message_id} ({rid}) is not in the fleet's ledger")
            else:
                unseen += 1  # charged at its worst case at a start: a kill cut it before the fleet reserved
        for rid in local.reserves:
            if rid in seen or rid in local.spends:
                continue
            if not local.released.get(rid, "").startswith("fleet budget"):
                unseen += 1
    if unseen > kills:
        audit.problems.append(f"{unseen} local reservations the fleet never saw, more than {kills} kills explain")
