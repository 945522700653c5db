"""The supervisor's decision log: append-only JSON lines, each hash-chained to the one before.

Every record carries `prev` (the hash of the previous record, 64 zeros for the first) and `hash`,
the sha256 of its own canonical JSON without the `hash` field. Editing, deleting, reordering or
inserting a line breaks a link that `verify` reports.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from supervisor.base.appendfile import append_line, repair_tail
from supervisor.base.errors import OuroborosError
from supervisor.base.text import printable
from supervisor.base.throttle import Throttle
from supervisor.store.candidates import CandidateRecord, now
from supervisor.store.decision_kinds import ROUTE_PREFIX, DecisionKind

GENESIS = "0" * 64
RECENT_BYTES = 128 * 1024  # how far back `find_recent` looks: a resumed step logs within seconds


class DecisionLogError(OuroborosError, ValueError):
    """The decision log cannot be read; the message names the file and the line."""


# Records the agent can cause again and again (a sabotaged journal refusing every note, junk or
# stale proposal files, requests the LLM route refuses): each kind is written at most once per
# THROTTLE_S by one log writer; the next one written counts those held back (`details.suppressed`).
# Not `proposal-dropped`: that record is the fate of each proposal it names (one verdict per
# proposal, supervisor/loop/intake.py), already batched, and its journal note is throttled instead.
REPEATABLE_KINDS = frozenset(
    {DecisionKind.JOURNAL_REFUSED, DecisionKind.PROPOSAL_REFUSED, DecisionKind.TASK_RESULT_REFUSED}
)
REPEATABLE_PREFIXES = (ROUTE_PREFIX,)
THROTTLE_S = 60.0


def is_repeatable(kind: str) -> bool:
    return kind in REPEATABLE_KINDS or kind.startswith(REPEATABLE_PREFIXES)


class Decision(BaseModel):
    """One line of the log."""

    # Values (ids, hashes, times) are unique per record: pydantic-core's JSON string cache would keep
    # up to 16,384 of them alive, RSS growing per verdict for hours (bench/soak.py). Keys only.
    model_config = ConfigDict(extra="forbid", cache_strings="keys")

    seq: int
    at: str
    # A plain string, not the enum: a kind another version wrote still reads (store/decision_kinds.py).
    kind: str = Field(description="accepted, rejected, needs-approval, approved, rollback, genesis, ...")
    candidate: str | None = None
    commit: str | None = None
    main_before: str | None = None
    main_after: str | None = None
    generation: int | None = None
    reasons: list[str] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)
    prev: str
    hash: str


class VerifyResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ok: bool
    records: int
    broken_line: int | None = None
    problem: str = ""


def canonical(record: dict[str, Any]) -> bytes:
    body = {key: value for key, value in record.items() if key != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(record)).hexdigest()


class DecisionLog:
    """Appends under an exclusive lock so concurrent writers still form one chain."""

    def __init__(self, path: Path, throttle_s: float = THROTTLE_S) -> None:
        self.path = path
        self.lock_path = path.with_suffix(".lock")
        self._throttle = Throttle(throttle_s)

    def append(self, kind: DecisionKind, **fields: Any) -> Decision | None:
        """Append one record; None when a repeatable kind was throttled (counted, not written)."""
        allowed, held_back = self._throttle.allow_counting(kind) if is_repeatable(kind) else (True, 0)
        if not allowed:
            return None
        if held_back:
            fields["details"] = {**fields.get("details", {}), "suppressed": held_back}
        return self._append(kind, **fields)

    def _append(self, kind: DecisionKind, **fields: Any) -> Decision:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            last = self._last()
            record = {
                "seq": (last["seq"] + 1) if last else 1,
                "at": now().isoformat(),
                "kind": str(kind),
                "prev": last["hash"] if last else GENESIS,
                **safe(fields),
            }
            record = Decision.model_validate({**record, "hash": "0"}).model_dump()
            record["hash"] = record_hash(record)
            append_line(self.path, json.dumps(record, sort_keys=True, ensure_ascii=False).encode())
            self._remember(record)
        return Decision.model_validate(record)

    def repair(self) -> str | None:
        """At start-up: cut a torn last record (a kill or full disk mid-write); a warning, or None."""
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._cached = None
            return repair_tail(self.path)

    def records(self) -> Iterator[Decision]:
        if not self.path.exists():
            return
        with open(self.path, "rb") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield self._parse(line, number)

    def _parse(self, line: bytes, number: int) -> Decision:
        try:
            return Decision.model_validate_json(line)
        except ValueError as exc:
            raise DecisionLogError(
                f"{self.path} line {number} is not a decision record ({str(exc)[:200]}); "
                f"check it with `supervisor verify-log` and restore the file from a backup"
            ) from exc

    def find_recent(
        self, kind: DecisionKind, candidate: str | None = None, commit: str | None = None
    ) -> Decision | None:
        """Like `find`, over the last RECENT_BYTES only: bounded work per decision, however long the log."""
        found = None
        needles = [
            json.dumps(value, ensure_ascii=False).encode()
            for value in (str(kind), candidate, commit)
            if value is not None
        ]
        for line in self._tail_lines(RECENT_BYTES):
            if not all(needle in line for needle in needles):
                continue  # cheap: most lines are about other candidates
            try:
                record = Decision.model_validate_json(line)
            except ValueError:
                continue
            if (
                record.kind == kind
                and (candidate is None or record.candidate == candidate)
                and (commit is None or record.commit == commit)
            ):
                found = record
        return found

    def tail(self, count: int) -> list[Decision]:
        return list(self.records())[-count:] if count > 0 else []

    def find(self, kind: DecisionKind, candidate: str | None = None, commit: str | None = None) -> Decision | None:
        """The latest record of `kind` for a candidate or commit (so re-running a step never logs twice)."""
        found = None
        for record in self.records():
            if (
                record.kind == kind
                and (candidate is None or record.candidate == candidate)
                and (commit is None or record.commit == commit)
            ):
                found = record
        return found

    def verify(self) -> VerifyResult:
        """Check every link; report the first line whose hash or link does not hold."""
        if not self.path.exists():
            return VerifyResult(ok=True, records=0)
        prev, count = GENESIS, 0
        with open(self.path, "rb") as handle:
            for number, line in enumerate(handle, start=1):
                problem = _check_line(line, prev, count + 1)
                if problem:
                    return VerifyResult(ok=False, records=count, broken_line=number, problem=problem)
                record = json.loads(line)
                prev, count = record["hash"], count + 1
        return VerifyResult(ok=True, records=count)

    _cached: tuple[int, int, dict[str, Any]] | None = None

    def _last(self) -> dict[str, Any] | None:
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return None
        if self._cached and self._cached[:2] == (info.st_ino, info.st_size):
            return self._cached[2]  # nobody appended since our own last append
        lines = self._tail_lines(64 * 1024) or self._tail_lines(info.st_size)
        return json.loads(lines[-1]) if lines else None

    def _remember(self, record: dict[str, Any]) -> None:
        info = os.stat(self.path)
        self._cached = (info.st_ino, info.st_size, record)

    def _tail_lines(self, window: int) -> list[bytes]:
        """Complete lines within the last `window` bytes (the first, maybe cut, is dropped)."""
        try:
            handle = open(self.path, "rb")
        except FileNotFoundError:
            return []
        with handle:
            size = handle.seek(0, os.SEEK_END)
            start = max(0, size - window)
            handle.seek(start)
            lines = handle.read().split(b"\n")
        if start > 0:
            lines = lines[1:]
        return [line for line in lines if line.strip()]


def safe(value: Any) -> Any:
    """Strings the agent influenced (file names, messages) made encodable: undecodable bytes escaped."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {safe(key): safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [safe(item) for item in value]
    return value


def _check_line(line: bytes, prev: str, expected_seq: int) -> str:
    try:
        record = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "not valid JSON"
    if not isinstance(record, dict) or "hash" not in record:
        return "not a decision record"
    if record.get("prev") != prev:
        return f"prev is {str(record.get('prev'))[:12]}…, but the record before hashes to {prev[:12]}…"
    if record_hash(record) != record["hash"]:
        return "the record's content does not match its hash (edited)"
    if record.get("seq") != expected_seq:
        return f"seq is {record.get('seq')}, expected {expected_seq}"
    return ""


def verdict_details(record: CandidateRecord) -> dict[str, Any]:
    """What a verdict record keeps beyond its reasons: summary, failing tests, passes, refusals."""
    details: dict[str, Any] = {
        "summary": record.proposal.summary if record.proposal else "",
        "proposal": record.proposal.id if record.proposal else None,
    }
    gate = record.gate
    if gate:
        details.update(
            failures=[f.model_dump() for f in gate.failures[:50]],
            protected=gate.protected,
            passes=[
                {"name": p.name, "ok": p.ok, "reason": p.reason, "duration_s": p.duration_s, "counts": p.counts}
                for p in gate.passes
            ],
        )
    if record.refused:
        details["refused"] = record.refused
    return details
