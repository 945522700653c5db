"""Candidates: their records on disk (live, recently finished, archived) and the proposal index.

Turning a workspace into a commit lives in supervisor/snapshot.py (re-exported here for callers).
"""

from __future__ import annotations

import os
from datetime import datetime, UTC
from pathlib import Path
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from supervisor.appendfile import write_atomic
from supervisor.errors import OuroborosError
from supervisor.gate import GateResult
from supervisor.protocol import Proposal
from supervisor.snapshot import (SKIPPED_NAMES, Snapshot, commit_snapshot, make_candidate_commit, printable,
                                 snapshot_workspace)
from supervisor.states import FINAL, CandidateState, check_candidate

__all__ = ["CANDIDATE_PREFIX", "REJECTED_PREFIX", "SKIPPED_NAMES", "CandidateError", "CandidateRecord",
           "CandidateStore", "Snapshot", "commit_snapshot", "make_candidate_commit", "now", "printable",
           "snapshot_workspace"]

CANDIDATE_PREFIX = "refs/heads/ouroboros/candidate/"
REJECTED_PREFIX = "refs/ouroboros/rejected/"

FINAL_STATES = FINAL


class CandidateError(OuroborosError, LookupError):
    """A candidate does not exist or is not in a state that allows the operation."""


class CandidateRecord(BaseModel):
    """Everything the supervisor knows about one candidate; saved as candidates/<id>.json."""

    # Values (ids, hashes, times) are unique per record: pydantic-core's JSON string cache would keep
    # up to 16,384 of them alive, RSS growing per verdict for hours (bench/soak.py). Keys only.
    model_config = ConfigDict(extra="forbid", cache_strings="keys")

    id: str
    gen: int
    n: int
    base: str = Field(description="main when the candidate was created.")
    worktree: str
    gitfile: str = Field(default="", description="The worktree's .git file as git wrote it.")
    state: CandidateState = CandidateState.PENDING
    created_at: datetime
    updated_at: datetime
    proposal: Proposal | None = None
    commit: str | None = Field(default=None, description="The commit being judged (after any rebase).")
    reasons: list[str] = Field(default_factory=list)
    refused: list[str] = Field(default_factory=list, description="Workspace entries refused as tricks.")
    gate: GateResult | None = None
    approved: bool = False
    generation: int | None = None
    infra_tries: int = Field(default=0, description="Gate runs the engine failed (not the candidate).")

    def change_state(self, new: CandidateState) -> None:
        """The one way a candidate's state changes: checked against `states.CANDIDATE_TRANSITIONS`."""
        self.state = check_candidate(self.state, new)

    @property
    def branch(self) -> str:
        return CANDIDATE_PREFIX + self.id

    @property
    def rejected_ref(self) -> str:
        return REJECTED_PREFIX + self.id


def now() -> datetime:
    return datetime.now(UTC)


class CandidateStore:
    """One JSON file per candidate, each written by temp file + rename so a crash never tears it.

    Live candidates are `candidates/<id>.json`; finished ones move to `candidates/done/`, so a start
    or a proposal only ever reads the few live records, never the whole history. `proposals/<id>`
    names the candidate a proposal id was recorded on: looking one up is one file, not a scan.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.done = folder / "done"
        self.proposals = folder.parent / "proposals"
        for path in (folder, self.done, self.proposals):
            path.mkdir(parents=True, exist_ok=True)
        self.corrupt: list[Path] = []

    def path(self, candidate_id: str) -> Path:
        if not candidate_id.replace("-", "").isdigit() or candidate_id.count("-") != 1:
            raise CandidateError(f"{candidate_id!r} is not a candidate id (like 3-1); see `supervisor candidates`")
        return self.folder / f"{candidate_id}.json"

    def _done_path(self, candidate_id: str) -> Path:
        return self.done / self.path(candidate_id).name

    def exists(self, candidate_id: str) -> bool:
        return self.path(candidate_id).exists() or self._done_path(candidate_id).exists()

    def load(self, candidate_id: str) -> CandidateRecord:
        for path in (self.path(candidate_id), self._done_path(candidate_id)):
            if path.exists():
                return self._read(path)
        raise CandidateError(f"no candidate {candidate_id}; list them with `supervisor candidates`")

    def _read(self, path: Path) -> CandidateRecord:
        try:
            return CandidateRecord.model_validate_json(path.read_bytes())
        except (ValidationError, OSError, ValueError) as exc:
            raise CandidateError(f"the candidate record {path} is unreadable or corrupt ({str(exc)[:200]}); "
                                 f"move it aside (e.g. to {path.name}.corrupt) and run the command again") from exc

    def save(self, record: CandidateRecord) -> CandidateRecord:
        record.updated_at = now()
        data = record.model_dump_json(indent=1).encode()
        if record.state in FINAL:
            write_atomic(self._done_path(record.id), data)
            self.path(record.id).unlink(missing_ok=True)
        else:
            write_atomic(self.path(record.id), data)
        return record

    def active(self) -> list[CandidateRecord]:
        """Unfinished candidates, oldest first; finished ones found here (a crash mid-save) are archived."""
        records = []
        for path in self.folder.glob("*.json"):
            record = self._try_read(path)
            if record is None:
                continue
            if record.state in FINAL:
                self.save(record)
            else:
                records.append(record)
        return sorted(records, key=lambda r: r.created_at)

    def newest(self, limit: int) -> tuple[list[CandidateRecord], int]:
        """The `limit` newest records by id (all when 0), oldest first, and how many there are in all.

        Ordered by the numbers in the file names, so only the records shown are read: a listing
        costs the same after ten candidates or a million.
        """
        self.corrupt = []
        names: dict[str, Path] = {}
        for folder in (self.done, self.folder):  # a live record wins over an archived one of the same id
            with os.scandir(folder) as entries:
                for entry in entries:
                    key = _id_of(entry.name)
                    if key is not None:
                        names[key] = Path(entry.path)
        ordered = sorted(names, key=_id_key)
        chosen = ordered[-limit:] if limit > 0 else ordered
        records = [record for record in (self._try_read(names[key]) for key in chosen) if record is not None]
        return records, len(ordered)

    def _try_read(self, path: Path) -> CandidateRecord | None:
        try:
            return self._read(path)
        except CandidateError:
            self.corrupt.append(path)
            return None

    def next_n(self, gen: int) -> int:
        """The first free candidate number of a generation in O(log n) looks (ids are used in order)."""
        high = 1
        while self.exists(f"{gen}-{high}"):
            high *= 2
        low = high // 2  # taken (or 0); high is free
        while high - low > 1:
            middle = (low + high) // 2
            if self.exists(f"{gen}-{middle}"):
                low = middle
            else:
                high = middle
        return high

    # -- the proposal index ---------------------------------------------------------------------

    def index_proposal(self, proposal_id: str, candidate_id: str) -> None:
        write_atomic(self._proposal_path(proposal_id), candidate_id.encode())

    def candidate_for(self, proposal_id: str) -> str | None:
        try:
            text = self._proposal_path(proposal_id).read_text().strip()
        except (FileNotFoundError, UnicodeDecodeError):
            return None
        return text or None

    def _proposal_path(self, proposal_id: str) -> Path:
        if not (len(proposal_id) == 32 and all(c in "0123456789abcdef" for c in proposal_id)):
            raise CandidateError(f"{proposal_id!r} is not a proposal id")
        folder = self.proposals / proposal_id[:2]
        folder.mkdir(exist_ok=True)
        return folder / proposal_id


def _id_of(file_name: str) -> str | None:
    """`3-12.json` -> `3-12`; None for anything else (temporary files, strays)."""
    stem, dot, suffix = file_name.rpartition(".")
    if suffix != "json" or not dot:
        return None
    generation, dash, number = stem.partition("-")
    return stem if dash and generation.isdigit() and number.isdigit() else None


def _id_key(candidate_id: str) -> tuple[int, int]:
    generation, _, number = candidate_id.partition("-")
    return int(generation), int(number)
