"""The durable record of every metered LLM call: append-only JSON lines, fsynced per record.

Three kinds of line: a `reserve` (the worst case of a request, written before it is forwarded), a
`spend` (what the response really used, closing its reservation) and a `release` (a request that
ended without spending, e.g. an upstream error). A reservation still open when the ledger is opened
belongs to a supervisor that was killed mid-request: it is settled at its worst case (the response
may have been served), so a kill neither frees nor double-counts it.

JSON lines rather than sqlite: one writer (the supervisor), append-only like the decision log,
readable with `tail`/`jq`, and a crash can tear at most the last line, which a reload cuts off.
Opening costs time and memory bounded by recent activity, not by the ledger's age: totals are
snapshotted beside the file (see `snapshot.py`) and only the lines after the snapshot are replayed.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from supervisor.base.errors import OuroborosError
from supervisor.route.pricing import Usage

log = logging.getLogger("ouroboros.route")

LEDGER_FILE_NAME = "llm-ledger.jsonl"
NO_CYCLE = "-"
KEEP_DAYS = 8  # per-day buckets kept in memory (the day cap needs only today)
MAX_CYCLES = 10_000  # per-cycle buckets kept, least recently used dropped first
SNAPSHOT_EVERY = 1000  # appends between snapshots


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


class Ledger:
    """The single writer of one ledger file; holds an exclusive lock on it while open.

    `lock` is re-entrant: the budget guard holds it across "check the caps, then reserve", so no
    settlement can change the totals between the check and the reservation.
    """

    def __init__(self, path: Path, handle: IO[bytes], totals: LedgerTotals) -> None:
        self.path = path
        self._handle = handle
        self.lock = threading.RLock()
        self.totals = totals
        self._since_snapshot = 0

    @classmethod
    def open(cls, path: Path) -> Ledger:
        """Open (creating if needed) for appending; settle what a killed supervisor left reserved."""
        from supervisor.route.checkpoint import load_totals

        path.parent.mkdir(parents=True, exist_ok=True)
        created = not path.exists()
        handle = open(path, "a+b")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.close()
            raise LedgerError(f"ledger {path} is held by another route; stop the other supervisor first") from exc
        if created:
            _fsync_dir(path.parent)
        try:
            totals, torn_at, replayed = load_totals(path)
            if torn_at is not None:
                _cut_torn_tail(path, handle, torn_at)
        except LedgerError:
            handle.close()
            raise
        ledger = cls(path, handle, totals)
        ledger._settle_leftovers()
        if replayed >= SNAPSHOT_EVERY:  # a long replay (no usable snapshot) is paid once, not per start
            ledger.snapshot()
        return ledger

    def append(self, record: Record, *, sync: bool = True) -> None:
        """Write one record before it counts: fsynced, or with `sync=False` only handed to the kernel.

        A record handed to the kernel survives a kill of the supervisor (the case reservations are
        for); only an OS crash can lose it, and the next fsynced record makes it durable too.
        """
        line = record.model_dump_json(exclude_none=True).encode("utf-8") + b"\n"
        with self.lock:
            try:
                self._handle.write(line)
                self._handle.flush()
                if sync:
                    os.fsync(self._handle.fileno())
            except (OSError, ValueError) as exc:  # ValueError: the ledger was closed under us
                raise LedgerError(
                    f"cannot write ledger {self.path}: {exc}; free disk space or fix permissions"
                ) from exc
            self.totals.apply(record)
            self._since_snapshot += 1
            if self._since_snapshot >= SNAPSHOT_EVERY:
                self.snapshot()

    def snapshot(self) -> None:
        """Save the totals and how far into the file they reach (failures only cost a slower open)."""
        from supervisor.route.checkpoint import save_snapshot

        with self.lock:
            try:
                save_snapshot(self.path, self._handle, self.totals)
                self._since_snapshot = 0
            except OSError as exc:
                log.warning("ledger %s: snapshot not written (%s); the next open replays more", self.path, exc)

    def _settle_leftovers(self) -> None:
        for held in list(self.totals.open.values()):
            log.warning("ledger %s: reservation %s was open at start; charged at its worst case", self.path, held.id)
            self.append(
                LedgerEntry(
                    ts=utc_now(),
                    run_id=held.run_id,
                    cycle=held.cycle,
                    model=held.model,
                    stream=held.stream,
                    status=0,
                    complete=False,
                    usage=held.usage,
                    cost_usd=held.cost_usd,
                    reservation=held.id,
                    charged_day=held.day,
                    note="settled at start at its worst case: the route stopped mid-request",
                )
            )

    def close(self) -> None:
        with self.lock:
            if not self._handle.closed:
                self.snapshot()
                self._handle.close()  # releases the flock


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


def _cut_torn_tail(path: Path, handle: IO[bytes], keep: int) -> None:
    """Drop the half-written last line a crash left: it was never fsynced, so never acknowledged."""
    size = os.fstat(handle.fileno()).st_size
    log.warning("ledger %s: dropping %d bytes of a write a crash interrupted", path, size - keep)
    handle.truncate(keep)
    os.fsync(handle.fileno())


def utc_now() -> datetime:
    return datetime.now(UTC)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
