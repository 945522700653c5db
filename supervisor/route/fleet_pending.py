"""Settlements the fleet's database could not take yet, kept in a small local file until they land.

A request that was in flight when the database went away was served: its real usage must reach the
fleet. Each such settlement is one JSON line, fsynced before the request's answer is released; the
file is rewritten (to a temporary file, then renamed) as settlements land. A torn last line (a
kill mid-write) is dropped: that settlement's reservation stays open in the database and is charged
at its worst case by a sweep, so a kill can overcharge the fleet, never undercharge it.
"""

from __future__ import annotations

import logging
import os
import threading
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

log = logging.getLogger("ouroboros.route")

PENDING_FILE_NAME = "fleet-pending.jsonl"


class PendingSettlement(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    how: Literal["spent", "released"]
    tokens: int
    usd: Decimal


class PendingFile:
    """The pending settlements of one node's route (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._items: dict[str, PendingSettlement] = {}
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        for number, raw in enumerate(self.path.read_bytes().split(b"\n"), start=1):
            if not raw.strip():
                continue
            try:
                item = PendingSettlement.model_validate_json(raw)
            except ValidationError:
                log.warning(
                    "%s line %d is not a settlement (a torn write?); dropped: swept at worst case", self.path, number
                )
                continue
            self._items[item.id] = item

    def add(self, item: PendingSettlement) -> None:
        """Keep `item` durably; OSError when the file cannot be written (it is still retried from memory)."""
        line = item.model_dump_json().encode() + b"\n"
        with self._lock:
            self._items[item.id] = item
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())

    def items(self) -> list[PendingSettlement]:
        with self._lock:
            return list(self._items.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def done(self, ids: list[str]) -> None:
        """Forget settlements that landed (or were already ended by a sweep); rewrite the file."""
        if not ids:
            return
        with self._lock:
            for item_id in ids:
                self._items.pop(item_id, None)
            if not self._items:
                self.path.unlink(missing_ok=True)
                return
            temporary = self.path.with_name(self.path.name + ".tmp")
            with open(temporary, "wb") as handle:
                handle.write(b"".join(i.model_dump_json().encode() + b"\n" for i in self._items.values()))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
