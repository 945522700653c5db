"""A scorecard per generation, computed by the supervisor from its own records, kept current per event.

Sources, all written by trusted code: the decision log (verdicts, main moves, rollbacks, probation,
agent starts and exits), the route's ledger (tokens and dollars, attributed to the generation that
was `main` when the response finished), and git (the first line of each accepted commit's message).
The one exception is `goals`: the number of goals the agent's own goals file gained while a
generation was `main` — the agent's word, labelled so wherever it is shown.

The store is a SQLite file in the gate's state folder. `update()` reads only what the decision log
and the ledger gained since the offsets it saved, and commits the new rows and the new offsets in
one transaction: a kill at any point leaves either the old state or the new one, never a mix.
Nothing is recomputed from all history; a decision log that was truncated or rewritten under the
saved offset makes the store start over (and says so).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import ValidationError

import supervisor.store.scorecard.records as records
import supervisor.store.scorecard.tables as schema
from supervisor.base.generation_number import candidate_id_or_none
from supervisor.base.git_ops import Git, GitError
from supervisor.route.ledger import LEDGER_FILE_NAME, LedgerEntry
from supervisor.route.pricing import USAGE_FIELDS
from supervisor.store.candidates import CandidateError, CandidateStore
from supervisor.store.decision_kinds import ROUTE_PREFIX, VERDICTS, DecisionKind
from supervisor.store.decision_log import GENESIS, Decision, record_hash
from supervisor.store.scorecard.models import CandidateRow, GenerationCard

# What this store counts, by rule: a store whose rule says otherwise (an older release's) is recounted
# from the start once, the note saying why.
ALIVE_RULE = "agent-runs"
TASK_RULE = "task-judged"
RULES = (
    ("alive_rule", ALIVE_RULE, "time alive is now the time the agent ran"),
    ("task_rule", TASK_RULE, "task verdicts are now counted per generation"),
)
TASK_OUTCOMES = ("passed", "failed", "gave-up", "infrastructure")
GATE_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


class ScorecardStore:
    """The incremental store of one agent repository's state folder (`<repo>/ouroboros/`)."""

    def __init__(
        self, state_dir: Path, goals_dir: Path | None = None, live_since: Callable[[], float | None] | None = None
    ) -> None:
        """`live_since`: when the supervisor that runs now started (epoch), None if none runs; the
        agent run it started counts as alive up to now. Without it no supervisor is taken to run."""
        self.state_dir = state_dir
        self.log_path = state_dir / "decisions.jsonl"
        self.ledger_path = state_dir / LEDGER_FILE_NAME
        self.goals_file = goals_dir / "completed.md" if goals_dir else None
        self.path = state_dir / "scorecard.sqlite"
        self._candidates = state_dir / "candidates"
        self._git = Git(state_dir.parent)
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._live_since = live_since or (lambda: None)

    @contextmanager
    def session(self) -> Iterator[sqlite3.Connection]:
        """The store's one connection, opened on first use and shared by threads one at a time."""
        with self._lock:
            if self._db is None:
                db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
                db.row_factory = sqlite3.Row
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(schema.SCHEMA)
                schema.add_columns(db)
                self._db = db
            yield self._db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # -- consuming new records ---------------------------------------------------------------

    def update(self) -> int:
        """Consume whatever the decision log and the ledger gained; returns how many records."""
        with self.session() as db:
            try:
                db.execute("BEGIN IMMEDIATE")  # one updater at a time; readers are never blocked (WAL)
                cutoff = time.time()
                self._recount_for_rules(db)
                count = self._consume_log(db) + self._consume_ledger(db, cutoff) + self._consume_goals(db)
                db.execute("COMMIT")
                return count
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def _recount_for_rules(self, db: sqlite3.Connection) -> None:
        """A store an older release counted by other rules counts again from the start (a new one just
        records the rules)."""
        stale = [why for key, value, why in RULES if schema.meta(db, key, "") != value]
        if not stale:
            return
        if schema.meta(db, "log_offset", "0") != "0":
            schema.reset(db, "recounted from the start: " + "; ".join(stale))
        schema.set_meta(db, **{key: value for key, value, _why in RULES})

    def _consume_log(self, db: sqlite3.Connection) -> int:
        offset, last_hash = int(schema.meta(db, "log_offset", "0")), schema.meta(db, "log_hash", GENESIS)
        size = self.log_path.stat().st_size if self.log_path.exists() else 0
        if size < offset or not self._continues(offset, last_hash):
            schema.reset(db, f"the decision log changed under offset {offset}; recounted from the start")
            offset, last_hash = 0, GENESIS
        lines, offset = records.read_lines(self.log_path, offset)
        for line in lines:
            last_hash = self._one_record(db, line, last_hash)
        schema.set_meta(db, log_offset=str(offset), log_hash=last_hash)
        return len(lines)

    def _continues(self, offset: int, last_hash: str) -> bool:
        """True if the line ending at `offset` still has the hash we consumed last (not rewritten)."""
        if offset == 0:
            return True
        with open(self.log_path, "rb") as handle:
            for window in (8_192, 4_000_000):  # a record fits the first window but for huge details
                handle.seek(max(0, offset - window))
                lines = handle.read(offset - handle.tell()).split(b"\n")
                if len(lines) >= 3 or offset <= window:
                    break
        try:
            record = json.loads(lines[-2]) if len(lines) >= 2 else None
        except ValueError:
            return False
        return isinstance(record, dict) and record.get("hash") == last_hash == record_hash(record)

    def _one_record(self, db: sqlite3.Connection, line: bytes, prev: str) -> str:
        seq = int(schema.meta(db, "log_seq", "0")) + 1
        problem = records.chain_problem(line, prev, seq)
        if problem and schema.meta(db, "chain_ok", "1") == "1":
            schema.set_meta(db, chain_ok="0", chain_problem=f"record {seq}: {problem}")
        try:
            decision = Decision.model_validate_json(line)
        except ValidationError:
            schema.set_meta(db, log_seq=str(seq))
            return prev
        schema.set_meta(db, log_seq=str(seq))
        self._apply(db, decision)
        return decision.hash

    def _apply(self, db: sqlite3.Connection, d: Decision) -> None:
        at = records.epoch(d.at)
        schema.bump(db, f"decisions|{d.kind}")
        if d.kind in (DecisionKind.GENESIS, DecisionKind.ADOPTED) and d.commit:
            self._new_generation(db, d, at, d.commit, None)
        elif d.kind in VERDICTS and d.candidate:
            self._verdict(db, d, at)
        elif d.kind == DecisionKind.APPROVED and d.candidate:
            db.execute("UPDATE candidates SET state='approved' WHERE id=?", (d.candidate,))
        elif d.kind == DecisionKind.ROLLBACK and d.main_after:
            self._rollback(db, d, at)
        elif d.kind == DecisionKind.TASK_JUDGED:
            self._task_verdict(db, d)
        elif d.kind == DecisionKind.PROBATION_PASSED and d.generation is not None:
            db.execute("UPDATE generations SET probation_passed=1 WHERE n=?", (d.generation,))
        elif d.kind == DecisionKind.AGENT_STARTED:
            db.execute("UPDATE generations SET starts=starts+1 WHERE n=?", (_gen_or_main(db, d),))
            schema.open_run(db, _gen_or_main(db, d), at)
        elif d.kind == DecisionKind.AGENT_CRASHED:
            db.execute("UPDATE generations SET crashes=crashes+1 WHERE n=?", (_gen_or_main(db, d),))
            schema.bump(db, "crashes")
            schema.close_run(db, at)
        elif d.kind == DecisionKind.AGENT_STOPPED:
            schema.close_run(db, at)
        elif d.kind.startswith(ROUTE_PREFIX):
            schema.bump(db, f"route_refusals|{d.kind.removeprefix(ROUTE_PREFIX)}")

    def _new_generation(
        self, db: sqlite3.Connection, d: Decision, at: float, commit: str, candidate: str | None
    ) -> None:
        number = d.generation if d.generation is not None else schema.next_generation(db)
        parent = d.main_before
        parent_gen = schema.generation_of(db, parent) if parent else None
        why = self._why(commit, d.details.get("summary", ""))
        gate_s = records.gate_seconds(d.details)
        acceptance = records.acceptance(d.details)
        db.execute(
            "INSERT OR IGNORE INTO generations (n, commit_sha, parent, parent_gen, candidate, accepted_at, "
            "why, gate_s, acceptance) VALUES (?,?,?,?,?,?,?,?,?)",
            (number, commit, parent, parent_gen, candidate, at, why, gate_s, acceptance),
        )
        schema.move_main(db, number, at)

    def _verdict(self, db: sqlite3.Connection, d: Decision, at: float) -> None:
        gen = self._candidate_gen(d.candidate or "")
        previous = db.execute("SELECT state FROM candidates WHERE id=?", (d.candidate,)).fetchone()
        failures = d.details.get("failures") or []
        gate_s = records.gate_seconds(d.details)
        db.execute(
            "INSERT OR REPLACE INTO candidates (id, gen, state, at, commit_sha, summary, reasons, failures, "
            "gate_s, generation) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                d.candidate,
                gen,
                d.kind,
                at,
                d.commit,
                str(d.details.get("summary", ""))[:500],
                json.dumps(d.reasons[:20]),
                json.dumps(failures[:50]),
                gate_s,
                d.generation,
            ),
        )
        column = {
            DecisionKind.ACCEPTED: "accepted",
            DecisionKind.REJECTED: "rejected",
            DecisionKind.NEEDS_APPROVAL: "waiting",
        }[DecisionKind(d.kind)]
        if previous is None:
            db.execute(f"UPDATE generations SET made=made+1, {column}={column}+1 WHERE n=?", (gen,))
        elif previous["state"] in (DecisionKind.NEEDS_APPROVAL, DecisionKind.APPROVED):
            db.execute(f"UPDATE generations SET waiting=waiting-1, {column}={column}+1 WHERE n=?", (gen,))
        if previous is None or previous["state"] != d.kind:
            schema.bump(db, f"verdicts|{d.kind}")
            schema.day_gate(db, at, passed=d.kind != DecisionKind.REJECTED)
            if gate_s is not None:
                schema.observe_gate(db, gate_s, GATE_BUCKETS)
        if d.kind == DecisionKind.ACCEPTED and d.commit:
            self._new_generation(db, d, at, d.commit, d.candidate)

    def _task_verdict(self, db: sqlite3.Connection, d: Decision) -> None:
        """A task verdict the queue took (`applied`), for the generation that ran at the verdict:
        infrastructure counts apart, never as an attempt; the others are attempts with their tokens."""
        details = d.details
        outcome = details.get("outcome")
        if details.get("applied") is not True or outcome not in TASK_OUTCOMES:
            return
        gen = _gen_or_main(db, d)
        schema.bump(db, f"tasks|{outcome}")
        if outcome == "infrastructure":
            db.execute("UPDATE generations SET tasks_infrastructure=tasks_infrastructure+1 WHERE n=?", (gen,))
            return
        tokens, regressions = _count(details.get("tokens")), _count(details.get("regressions"))
        column = "tasks_passed" if outcome == "passed" else "tasks_failed"
        if outcome != "failed":
            regressions = 0  # a regression counts against a failed verdict only
        db.execute(
            f"UPDATE generations SET tasks_attempted=tasks_attempted+1, {column}={column}+1, "
            "task_regressions=task_regressions+?, task_tokens=task_tokens+? WHERE n=?",
            (regressions, tokens, gen),
        )
        schema.bump(db, "task_tokens", tokens)
        schema.bump(db, "task_regressions", regressions)

    def _rollback(self, db: sqlite3.Connection, d: Decision, at: float) -> None:
        left = schema.generation_of(db, d.main_before) if d.main_before else None
        if left is not None:
            db.execute("UPDATE generations SET rolled_back=1 WHERE n=?", (left,))
        target = d.generation if d.generation is not None else schema.generation_of(db, d.main_after)
        if target is not None:
            db.execute("UPDATE generations SET rollbacks_from=rollbacks_from+1 WHERE n=?", (target,))
            schema.move_main(db, target, at)
        schema.bump(db, "rollbacks")

    def _candidate_gen(self, candidate_id: str) -> int:
        try:
            return CandidateStore(self._candidates).load(candidate_id).gen
        except (CandidateError, ValidationError, OSError):
            parsed = candidate_id_or_none(candidate_id)
            return parsed[0] if parsed is not None else -1

    def _why(self, commit: str, fallback: object) -> str:
        """The first line of the commit's message (git), else of the proposal's summary (the record)."""
        try:
            text = self._git.message(commit)
        except (GitError, OSError):
            text = ""
        lines = (text.strip() or str(fallback or "")).strip().splitlines()
        return lines[0][:300] if lines else ""

    def _consume_ledger(self, db: sqlite3.Connection, cutoff: float) -> int:
        offset = int(schema.meta(db, "ledger_offset", "0"))
        size = self.ledger_path.stat().st_size if self.ledger_path.exists() else 0
        if size < offset:
            offset = 0  # moved aside and started over, as the route's docs allow
        lines, end = records.read_lines(self.ledger_path, offset)
        consumed = 0
        for line in lines:
            try:
                entry = LedgerEntry.model_validate_json(line)
            except ValidationError:
                offset += len(line) + 1
                continue
            if entry.ts.timestamp() > cutoff:
                break  # a main move logged after our read of the log may still claim it: next update
            schema.add_spend(db, entry, schema.generation_at(db, entry.ts.timestamp()), USAGE_FIELDS)
            schema.saw_run(db, entry.ts.timestamp())  # the agent asked its model: it ran then
            offset += len(line) + 1
            consumed += 1
        schema.set_meta(db, ledger_offset=str(offset if consumed < len(lines) else end))
        return consumed

    def _consume_goals(self, db: sqlite3.Connection) -> int:
        """Goals the agent's completed.md gained, each credited to the generation that was main when
        its `**Completed:**` time says it was done (now, if that time is unreadable or in the future)."""
        if self.goals_file is None:
            return 0
        stamps = records.completed_stamps(self.goals_file)
        seen = int(schema.meta(db, "goals_seen", "0"))
        for stamp in stamps[seen:]:
            when = stamp if stamp is not None and stamp <= time.time() else time.time()
            db.execute("UPDATE generations SET goals=goals+1 WHERE n=?", (schema.generation_at(db, when),))
        if len(stamps) != seen:
            schema.set_meta(db, goals_seen=str(len(stamps)))
        return max(0, len(stamps) - seen)

    # -- reading ------------------------------------------------------------------------------

    def cards(self, limit: int | None = None, before: int | None = None) -> list[GenerationCard]:
        """Generations, newest first, with the current one's time alive counted up to now."""
        with self.session() as db:
            return schema.cards(db, GenerationCard, limit, before, self._live_since())

    def card(self, number: int) -> GenerationCard | None:
        found = self.cards(limit=1, before=number + 1)  # `before` is exclusive
        return found[0] if found and found[0].generation == number else None

    def candidates(self, limit: int = 200, before: int | None = None, state: str | None = None) -> list[CandidateRow]:
        with self.session() as db:
            return schema.candidate_rows(db, CandidateRow, limit, before, state)

    def not_accepted_since(self, generation: int, limit: int = 100) -> list[CandidateRow]:
        """Candidates made by `generation` or later that did not become generations, newest first."""
        with self.session() as db:
            return schema.candidate_rows(db, CandidateRow, limit, None, None, min_gen=generation)

    def candidate(self, candidate_id: str) -> CandidateRow | None:
        with self.session() as db:
            rows = schema.candidate_rows(db, CandidateRow, 1, None, None, candidate_id)
        return rows[0] if rows else None

    def snapshot(self) -> dict[str, Any]:
        """Counters, per-day figures, the chain check and the main generation, in one read."""
        with self.session() as db:
            return schema.snapshot(db)


def _gen_or_main(db: sqlite3.Connection, d: Decision) -> int | None:
    return d.generation if d.generation is not None else schema.main_generation(db)


def _count(value: object) -> int:
    """A count from a record's details: a whole number >= 0, else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
