"""Candidates: their records on disk (live, recently finished, archived) and the proposal index.

Turning a workspace into a commit lives in supervisor/gate/workspace_commit.py (re-exported here for callers).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from supervisor.base.appendfile import write_atomic
from supervisor.base.errors import OuroborosError
from supervisor.base.generation_number import candidate_id_or_none
from supervisor.store.gate_results import GateResult
from supervisor.store.protocol import Proposal
from supervisor.store.record_archive import Archive, ArchiveError, ProposalIndex, split_id
from supervisor.store.states import FINAL, CandidateState, check_candidate

__all__ = ["CANDIDATE_PREFIX", "REJECTED_PREFIX", "CandidateError", "CandidateRecord", "CandidateStore", "now"]

CANDIDATE_PREFIX = "refs/heads/ouroboros/candidate/"
REJECTED_PREFIX = "refs/ouroboros/rejected/"

FINAL_STATES = FINAL
KEEP_RECORDS = 5000  # finished records kept as files; older ones are archived (RetentionPolicy.keep_records)
MAX_PER_PASS = 2000  # records archived by one prune: a verdict never waits on a huge first pass


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
    or a proposal only ever reads the few live records, never the whole history. Beyond the newest
    `keep` finished ones, `prune` moves records into the archive (supervisor/store/record_archive.py), where
    `load` still finds them. The proposal index names the candidate a proposal id was recorded on.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.done = folder / "done"
        self.proposals = folder.parent / "proposals"
        for path in (folder, self.done, self.proposals):
            path.mkdir(parents=True, exist_ok=True)
        self.archive = Archive(folder / "archive")
        self.index = ProposalIndex(self.proposals)
        self.corrupt: list[Path] = []

    def path(self, candidate_id: str) -> Path:
        if candidate_id_or_none(candidate_id) is None:
            raise CandidateError(f"{candidate_id!r} is not a candidate id (like 3-1); see `supervisor candidates`")
        return self.folder / f"{candidate_id}.json"

    def _done_path(self, candidate_id: str) -> Path:
        return self.done / self.path(candidate_id).name

    def exists(self, candidate_id: str) -> bool:
        """The files first, then the high-water mark read afresh: a prune (an operator's `reject` runs
        one in its own process) raises the mark before it removes a file, so an id whose file is
        gone by the time we look is under the mark we read after it. A mark read before the look
        could predate that prune, and the id would be handed out again."""
        if self.path(candidate_id).exists() or self._done_path(candidate_id).exists():
            return True
        generation, number = split_id(candidate_id)
        return number <= self.archive.high_water().get(generation, 0)

    def load(self, candidate_id: str) -> CandidateRecord:
        for path in (self.path(candidate_id), self._done_path(candidate_id)):
            try:
                return self._read(path, missing_ok=True)
            except FileNotFoundError:
                continue  # absent, or archived by a prune this very moment: the archive has it then
        for line in reversed(self.archive.find(candidate_id)):
            try:
                return CandidateRecord.model_validate_json(line)
            except ValidationError:
                continue
        raise CandidateError(f"no candidate {candidate_id}; list them with `supervisor candidates`")

    def _read(self, path: Path, missing_ok: bool = False) -> CandidateRecord:
        try:
            return CandidateRecord.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            if missing_ok:
                raise
            exc_text = "it vanished"
        except (ValidationError, OSError, ValueError) as exc:
            exc_text = str(exc)[:200]
        raise CandidateError(
            f"the candidate record {path} is unreadable or corrupt ({exc_text}); "
            f"move it aside (e.g. to {path.name}.corrupt) and run the command again"
        )

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
        """Unfinished candidates, oldest first; finished ones found here (a crash mid-save) are moved to done."""
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
        costs the same after ten candidates or a million (the archive is read only for more than
        the files hold). The total counts archived ids through the high-water marks (ids are used
        in order, so every number up to a generation's mark was used).
        """
        self.corrupt = []
        names = self._file_ids()
        marks = self.archive.high_water()
        total = sum(marks.values()) + sum(1 for key in names if split_id(key)[1] > marks.get(split_id(key)[0], 0))
        if limit == 0 or limit > len(names):
            return self._with_archive(names, limit), total
        chosen = sorted(names, key=split_id)[-limit:]
        records = [record for record in (self._try_read(names[key]) for key in chosen) if record is not None]
        return records, total

    def _file_ids(self) -> dict[str, Path]:
        names: dict[str, Path] = {}
        for folder in (self.done, self.folder):  # a live record wins over a finished one of the same id
            with os.scandir(folder) as entries:
                for entry in entries:
                    key = _id_of(entry.name)
                    if key is not None:
                        names[key] = Path(entry.path)
        return names

    def _with_archive(self, names: dict[str, Path], limit: int) -> list[CandidateRecord]:
        """The files, then the archive for every id without a readable file: a prune (another process)
        archives a record before it removes its file, so the archive read after holds what vanished."""
        found = {key: self._read_listed(path) for key, path in names.items()}
        for line in self.archive.lines():
            try:
                record = CandidateRecord.model_validate_json(line)
            except ValidationError:
                continue
            if found.get(record.id) is None:
                found[record.id] = record
        ordered = sorted(found, key=split_id)
        chosen = ordered[-limit:] if limit > 0 else ordered
        return [record for record in (found[key] for key in chosen) if record is not None]

    def _read_listed(self, path: Path) -> CandidateRecord | None:
        """A listed file's record; None if it is gone since (archived meanwhile) or unreadable (noted)."""
        try:
            return self._read(path, missing_ok=True)
        except FileNotFoundError:
            return None
        except CandidateError:
            self.corrupt.append(path)
            return None

    def _try_read(self, path: Path) -> CandidateRecord | None:
        try:
            return self._read(path)
        except CandidateError:
            self.corrupt.append(path)
            return None

    def next_n(self, gen: int) -> int:
        """The first free candidate number of a generation in O(log n) looks (ids are used in order;
        archived ones are known by the high-water mark, so an id is never handed out twice)."""
        low = self.archive.high_water().get(gen, 0)  # taken (or 0)
        step = 1
        while self.exists(f"{gen}-{low + step}"):
            step *= 2
        high = low + step  # free
        low += step // 2
        while high - low > 1:
            middle = (low + high) // 2
            if self.exists(f"{gen}-{middle}"):
                low = middle
            else:
                high = middle
        return high

    # -- retention ----------------------------------------------------------------------------

    def prune(self, keep: int = KEEP_RECORDS) -> int:
        """Archive the oldest finished records beyond the newest `keep`; returns how many moved.

        Runs when the files exceed `keep` by a tenth, so most calls only list a folder, and moves at
        most MAX_PER_PASS (an upgraded instance catches up over a few passes). Steps, each
        safe to be killed after: (1) raise the high-water marks, (2) append the records to their
        blocks, synced, skipping those already there, (3) delete their files. A re-run finishes a
        pass a kill interrupted. One pass at a time (an flock); a busy lock skips this pass.
        """
        with _pass_lock(self.archive.folder) as mine:
            if not mine:
                return 0
            finished = sorted(self._done_ids(), key=split_id)
            if len(finished) <= keep + max(keep // 10, 1):
                return 0
            self.index.migrate_legacy()  # entries older versions wrote one file each
            victims: dict[str, bytes] = {}
            for key in finished[: min(len(finished) - keep, MAX_PER_PASS)]:
                record = self._try_read(self._done_path(key))
                if record is not None:  # an unreadable one stays as a file, named by `candidates`
                    victims[key] = record.model_dump_json().encode()
            marks: dict[int, int] = {}
            for key in victims:
                generation, number = split_id(key)
                marks[generation] = max(number, marks.get(generation, 0))
            self.archive.raise_high_water(marks)
            self.archive.append(victims)
            for key in victims:
                self._done_path(key).unlink(missing_ok=True)
            return len(victims)

    def _done_ids(self) -> list[str]:
        with os.scandir(self.done) as entries:
            return [key for key in (_id_of(entry.name) for entry in entries) if key is not None]

    # -- the proposal index ---------------------------------------------------------------------

    def index_proposal(self, proposal_id: str, candidate_id: str) -> None:
        try:
            self.index.put(proposal_id, candidate_id)
        except ArchiveError as exc:
            raise CandidateError(str(exc)) from exc

    def index_proposals(self, proposal_ids: list[str], value: str) -> None:
        """Many proposal ids with one value (the dropped ones of a verdict): one fsync per bucket."""
        try:
            self.index.put_many(proposal_ids, value)
        except ArchiveError as exc:
            raise CandidateError(str(exc)) from exc

    def candidate_for(self, proposal_id: str) -> str | None:
        try:
            return self.index.get(proposal_id)
        except ArchiveError as exc:
            raise CandidateError(str(exc)) from exc


@contextmanager
def _pass_lock(folder: Path) -> Iterator[bool]:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _id_of(file_name: str) -> str | None:
    """`3-12.json` -> `3-12`; None for anything else (temporary files, strays)."""
    stem, dot, suffix = file_name.rpartition(".")
    if suffix != "json" or not dot:
        return None
    return stem if candidate_id_or_none(stem) is not None else None
