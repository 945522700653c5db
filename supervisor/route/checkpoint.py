"""Ledger snapshots: the totals up to a byte offset, so opening replays only what came after.

`llm-ledger.jsonl.snapshot` holds the totals (bounded: recent days and cycles only), the offset
they reach and a hash of the bytes just before it. It is written atomically (temporary file, fsync,
rename) every `SNAPSHOT_EVERY` appends and on close. At open, a snapshot whose offset and hash
still match the ledger is trusted; otherwise (missing, torn, a ledger replaced or cut) the whole
ledger is replayed, line by line, once. The detail lines stay in the ledger for audit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import IO

from supervisor.route.ledger_records import LedgerError, LedgerTotals, iter_records

log = logging.getLogger("ouroboros.route")

_VERSION = 1
_HASHED = 4096  # bytes before the offset whose hash ties the snapshot to this ledger


def snapshot_path(ledger: Path) -> Path:
    return ledger.with_name(ledger.name + ".snapshot")


def save_snapshot(ledger: Path, handle: IO[bytes], totals: LedgerTotals) -> None:
    offset = os.fstat(handle.fileno()).st_size
    data = {"v": _VERSION, "offset": offset, "tail_sha256": _tail_hash(ledger, offset), **totals.dump()}
    target = snapshot_path(ledger)
    scratch = target.with_name(target.name + ".tmp")
    with open(scratch, "w", encoding="utf-8") as out:
        json.dump(data, out, separators=(",", ":"))
        out.flush()
        os.fsync(out.fileno())
    os.replace(scratch, target)


def load_totals(ledger: Path) -> tuple[LedgerTotals, int | None, int]:
    """Totals of the whole ledger, the offset of a torn last line to cut (None: not torn), and how
    many records had to be replayed past the snapshot."""
    totals, offset = _trusted_snapshot(ledger)
    replayed = 0
    if not ledger.exists():
        return totals, None, replayed
    for position, record in iter_records(ledger, offset):
        if record is None:
            return totals, position, replayed
        totals.apply(record)
        replayed += 1
    return totals, None, replayed


def _trusted_snapshot(ledger: Path) -> tuple[LedgerTotals, int]:
    path = snapshot_path(ledger)
    try:
        data = json.loads(path.read_bytes())
        offset = int(data["offset"])
        if data.get("v") != _VERSION or not 0 <= offset <= ledger.stat().st_size:
            raise ValueError("its offset is past the end of the ledger")
        if data.get("tail_sha256") != _tail_hash(ledger, offset):
            raise ValueError("the ledger before its offset has changed")
        return LedgerTotals.load(data), offset
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ledger snapshot %s not used (%s); replaying the whole ledger", path, str(exc)[:200])
    return LedgerTotals(), 0


def _tail_hash(ledger: Path, offset: int) -> str:
    try:
        with open(ledger, "rb") as handle:
            handle.seek(max(0, offset - _HASHED))
            data = handle.read(min(offset, _HASHED))
    except OSError as exc:
        raise LedgerError(f"cannot read ledger {ledger}: {exc}") from exc
    return hashlib.sha256(data).hexdigest()


def read_totals(ledger: Path) -> tuple[LedgerTotals, bool]:
    """Read-only totals for reports (`supervisor budget`): snapshot plus tail, nothing written."""
    totals, torn_at, _ = load_totals(ledger)
    return totals, torn_at is not None
