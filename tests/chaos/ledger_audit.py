"""Does the route's ledger account for every response the scripted model served? (test helper)

The invariant, from the route's design (reserve the worst case before forwarding, record the real
usage after; a reservation a kill leaves open is charged at its worst case when the ledger is next
opened, and until then it is held against every cap):

1. Every response the model served is in the ledger: either as a `spend` with its message id and
   exactly the usage the model reported, or, when a kill landed between the answer and its
   record, covered by one reservation of its own that was open while it was served and is charged
   at its worst case (settled at the next start, or still held). Its worst case covers the served
   usage: as many tokens in all, as many output tokens, and at least its price.
2. The ledger invents nothing: every spend with a message id is a response the model served,
   charged once; every other spend is a reservation settled at its worst case at start.
3. Worst-case charges are only what kills explain: at most `interrupted` of them (settled at a
   start or still open), where the caller knows how many requests its kills can have cut (one
   per kill for an agent that sends one request at a time, none for a clean stop).

So the money the ledger charges is never less than the money the model served, and only requests
a kill interrupted are charged more. A route that forgets to record a response fails (1) if it
also drops the reservation, else (3): its reservations pile up beyond what the kills explain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor.route.ledger import LedgerEntry, Release, Reservation, iter_records
from supervisor.route.pricing import ModelPrice, Usage


@dataclass
class Held:
    """A reservation charged at its worst case: settled at a start (`until` = that time) or still open."""

    reservation: Reservation
    until: float


@dataclass
class Audit:
    served: int = 0
    recorded: int = 0
    covered_by_worst_case: int = 0
    held: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def audit_ledger(served: list[dict[str, Any]], ledger: Path, price: ModelPrice, interrupted: int) -> Audit:
    """Check the invariant above; `served` are the scripted model's lines (scripted_model.served)."""
    reserves, spends, released = _read(ledger)
    audit = Audit(served=len(served))
    by_id = _spends_by_message(spends, audit)
    held = _held(reserves, spends, released, audit)
    audit.held = len(held)
    if audit.held > interrupted:
        audit.problems.append(
            f"{audit.held} requests charged at their worst case (not recorded), but kills "
            f"can explain at most {interrupted}"
        )
    missing = []
    for response in served:
        usage = Usage.model_validate(response["usage"])
        spend = by_id.pop(response["id"], None)
        if spend is None:
            missing.append((response, usage))
        elif spend.usage != usage:
            audit.problems.append(f"{response['id']}: the model served {usage}, the ledger charged {spend.usage}")
        else:
            audit.recorded += 1
    for message_id in by_id:
        audit.problems.append(f"{message_id}: charged in the ledger but never served by the model")
    audit.covered_by_worst_case = _cover(missing, held, price, audit)
    return audit


def _read(ledger: Path) -> tuple[dict[str, Reservation], list[LedgerEntry], set[str]]:
    reserves: dict[str, Reservation] = {}
    spends: list[LedgerEntry] = []
    released: set[str] = set()
    for _, record in iter_records(ledger):
        if isinstance(record, Reservation):
            reserves[record.id] = record
        elif isinstance(record, Release):
            released.add(record.id)
        elif isinstance(record, LedgerEntry):
            spends.append(record)
    return reserves, spends, released


def _spends_by_message(spends: list[LedgerEntry], audit: Audit) -> dict[str, LedgerEntry]:
    by_id: dict[str, LedgerEntry] = {}
    for spend in spends:
        if spend.message_id is None:
            continue
        if spend.message_id in by_id:
            audit.problems.append(f"{spend.message_id}: charged twice")
        by_id[spend.message_id] = spend
    return by_id


def _held(reserves: dict[str, Reservation], spends: list[LedgerEntry], released: set[str], audit: Audit) -> list[Held]:
    """Reservations charged at their worst case: settled at a start, or still open at the end."""
    held: list[Held] = []
    settled: set[str] = set()
    for spend in spends:
        if spend.reservation is not None:
            settled.add(spend.reservation)
        if spend.message_id is not None:
            continue
        reservation = reserves.get(spend.reservation or "")
        if spend.status != 0 or reservation is None or spend.usage != reservation.usage:
            audit.problems.append(f"a spend without a message id that is not a worst-case settlement: {spend}")
            continue
        held.append(Held(reservation, spend.ts.timestamp()))
    for reservation_id, reservation in reserves.items():
        if reservation_id not in settled and reservation_id not in released:
            held.append(Held(reservation, float("inf")))  # charged at the next open
    return held


def _cover(missing: list[tuple[dict[str, Any], Usage]], held: list[Held], price: ModelPrice, audit: Audit) -> int:
    """Match each unrecorded response to its own worst-case charge (a bipartite matching)."""
    fits = [
        [h for h, charge in enumerate(held) if _covers(charge, response, usage, price)] for response, usage in missing
    ]
    owner: dict[int, int] = {}

    def place(index: int, seen: set[int]) -> bool:
        for h in fits[index]:
            if h not in seen:
                seen.add(h)
                if h not in owner or place(owner[h], seen):
                    owner[h] = index
                    return True
        return False

    for index, (response, usage) in enumerate(missing):
        if not place(index, set()):
            audit.problems.append(
                f"{response['id']} (usage {usage}) was served but is not in the ledger, "
                f"and no reservation open while it was served covers it"
            )
    return len(owner)


def _covers(charge: Held, response: dict[str, Any], usage: Usage, price: ModelPrice) -> bool:
    worst = charge.reservation
    served_at = float(response["ts"])
    inputs = usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens
    return (
        worst.ts.timestamp() <= served_at <= charge.until
        and worst.usage.total_tokens >= usage.total_tokens
        and worst.usage.output_tokens >= usage.output_tokens
        and worst.usage.input_tokens >= inputs
        and worst.cost_usd >= price.cost(usage)
    )
