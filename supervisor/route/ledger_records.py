"""The ledger's records and what they add up to: reserve / spend / release lines, totals, reading.

The durable file and its single writer are `ledger.py`; the snapshot of the totals beside it is
`checkpoint.py`. Both build on this module, which needs neither.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from supervisor.base.errors import OuroborosError
from supervisor.route.pricing import Usage

KEEP_DAYS = 8  # per-day buckets kept in memory (the day cap needs only today)
MAX_CYCLES = 10_000  # per-cycle buckets kept, least recently used dropped first


class LedgerError(OuroborosError, OSError):
    """The ledger cannot be read or written; spend cannot be trusted until it is fixed."""


class _Record(BaseModel):
    # Values (ids, hashes, times) are unique per record: pydantic-core's JSON string cache would keep
    # up to 16,384 of them alive, RSS growing per verdict for hours (bench/soak.py). Keys only.
    model_config = ConfigDict(extra="forbid", cache_strings="keys")

    v: Literal[1] = 1
    ts: datetime


class LedgerEntry(_Record):
    """One metered response (or the part of a stream that arrived), closing its reservation."""

    kind: Literal["spend"] = "spend"
    run_id: str = Field(description="The agent run whose credential made the call.")
    cycle: str = Field(description="The agent's cycle id from x-ouroboros-cycle, or '-'.")
    model: str
    stream: bool
    status: int = Field(description="HTTP status the upstream answered with (0: unknown, settled at start).")
    message_id: str | None = None
    complete: bool = Field(description="False when a stream ended before message_stop.")
    usage: Usage
    cost_usd: Decimal
    reservation: str | None = Field(default=None, description="The reservation this spend settles.")
    charged_day: str | None = Field(default=None, description="UTC day charged: the reservation's day.")
    note: str | None = None

    @property
    def day(self) -> str:
        return self.charged_day or self.ts.astimezone(UTC).date().isoformat()


class Reservation(_Record):
    """The worst case of one request, held against every cap until it is settled or released."""

    kind: Literal["reserve"] = "reserve"
    id: str
    run_id: str
    cycle: str
    day: str = Field(description="UTC day the request is charged to.")
    model: str
    stream: bool = False
    usage: Usage = Field(description="Worst case: the input bound and max_tokens as output.")
    cost_usd: Decimal = Field(description="Worst-case price, server tools included.")


class Release(_Record):
    """A reservation that ended without spending."""

    kind: Literal["release"] = "release"
    id: str
    reason: str


Record = LedgerEntry | Reservation | Release


@dataclass(slots=True)
class Spend:
    """Tokens and dollars spent in one scope (a plain counter: it is updated on every append)."""

    tokens: int = 0
    usd: Decimal = Decimal(0)
    requests: int = 0

    def add(self, tokens: int, usd: Decimal) -> None:
        self.tokens += tokens
        self.usd += usd
        self.requests += 1

    def model_dump(self, mode: str = "json") -> dict[str, Any]:
        return {"tokens": self.tokens, "usd": str(self.usd), "requests": self.requests}

    @classmethod
    def model_validate(cls, data: dict[str, Any]) -> Spend:
        return cls(int(data["tokens"]), Decimal(data["usd"]), int(data["requests"]))


class LedgerTotals:
    """Spend by scope plus the reservations still open; bounded: old days and cycles are dropped."""

    def __init__(self) -> None:
        self.total = Spend()
        self.by_day: dict[str, Spend] = {}
        self.by_cycle: OrderedDict[str, Spend] = OrderedDict()
        self.open: dict[str, Reservation] = {}

    def apply(self, record: Record) -> None:
        if isinstance(record, Reservation):
            self.open[record.id] = record
        elif isinstance(record, Release):
            self.open.pop(record.id, None)
        else:
            self.add(record)

    def add(self, entry: LedgerEntry) -> None:
        if entry.reservation is not None:
            self.open.pop(entry.reservation, None)
        tokens, usd = entry.usage.total_tokens, entry.cost_usd
        self.total.add(tokens, usd)
        self.by_day.setdefault(entry.day, Spend()).add(tokens, usd)
        if len(self.by_day) > 2 * KEEP_DAYS:
            for old in sorted(self.by_day)[:-KEEP_DAYS]:
                del self.by_day[old]
        self._touch_cycle(entry.cycle).add(tokens, usd)

    def _touch_cycle(self, cycle: str) -> Spend:
        spend = self.by_cycle.get(cycle)
        if spend is None:
            spend = self.by_cycle[cycle] = Spend()
            while len(self.by_cycle) > MAX_CYCLES:
                self.by_cycle.popitem(last=False)
        else:
            self.by_cycle.move_to_end(cycle)
        return spend

    def day(self, day: str) -> Spend:
        return self.by_day.get(day, Spend())

    def last_cycle(self) -> str | None:
        """The cycle of the latest entry (cycles are kept in the order they were last charged)."""
        return next(reversed(self.by_cycle), None)

    def cycle(self, cycle: str) -> Spend:
        return self.by_cycle.get(cycle, Spend())

    def reserved(self, scope: str, key: str) -> tuple[int, Decimal]:
        """Tokens and dollars held by open reservations in one scope ('cycle', 'day' or 'total')."""
        tokens, usd = 0, Decimal(0)
        for held in self.open.values():
            if scope == "total" or (scope == "day" and held.day == key) or (scope == "cycle" and held.cycle == key):
                tokens += held.usage.total_tokens
                usd += held.cost_usd
        return tokens, usd

    def dump(self) -> dict[str, Any]:
        return {
            "total": self.total.model_dump(mode="json"),
            "by_day": {k: v.model_dump(mode="json") for k, v in self.by_day.items()},
            "by_cycle": [[k, v.model_dump(mode="json")] for k, v in self.by_cycle.items()],
            "open": [r.model_dump(mode="json") for r in self.open.values()],
        }

    @classmethod
    def load(cls, data: dict[str, Any]) -> LedgerTotals:
        totals = cls()
        totals.total = Spend.model_validate(data["total"])
        totals.by_day = {k: Spend.model_validate(v) for k, v in data["by_day"].items()}
        totals.by_cycle = OrderedDict((k, Spend.model_validate(v)) for k, v in data["by_cycle"])
        totals.open = {r["id"]: Reservation.model_validate(r) for r in data["open"]}
        return totals


def parse_record(raw: bytes) -> Record:
    """One ledger line; raises ValueError (or ValidationError) when it is not a valid record.

    The kind is guessed from the bytes and then checked by the model itself (its `kind` is a
    Literal), so a wrong guess is a validation error, never a misread record.
    """
    if b'"kind":"reserve"' in raw:
        return Reservation.model_validate_json(raw)
    if b'"kind":"release"' in raw:
        return Release.model_validate_json(raw)
    return LedgerEntry.model_validate_json(raw)


def iter_records(path: Path, offset: int = 0) -> Iterator[tuple[int, Record | None]]:
    """(end offset, record) for each line from `offset`; a torn last line yields (start, None).

    Reads line by line, so memory does not grow with the file; corruption before the end raises.
    """
    with open(path, "rb") as handle:
        handle.seek(offset)
        position = offset
        for number, raw in enumerate(handle, start=1):
            start, position = position, position + len(raw)
            if not raw.endswith(b"\n"):  # no newline after it: the write a crash interrupted
                yield start, None
                return
            if not raw.strip():
                continue
            try:
                record = parse_record(raw)
            except (ValidationError, ValueError) as exc:
                where = f"line {number}" + (f" after byte {offset}" if offset else "")
                raise LedgerError(
                    f"ledger {path} {where} is corrupt ({_short(exc)}); "
                    "restore it from a backup or move it aside to start counting from zero"
                ) from exc
            yield position, record


def read_entries(path: Path) -> tuple[list[LedgerEntry], bool]:
    """Every spend entry in order, and whether a torn last line was skipped; corruption elsewhere raises."""
    if not path.exists():
        return [], False
    entries: list[LedgerEntry] = []
    torn = False
    for _, record in iter_records(path):
        if record is None:
            torn = True
        elif isinstance(record, LedgerEntry):
            entries.append(record)
    return entries, torn


def utc_now() -> datetime:
    return datetime.now(UTC)


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
