"""What reaches `main`: proposal → commit → gate → compare-and-swap merge, or reject; and rollback.

Each candidate moves through states saved to disk before each step (pending → committing → gating
→ merging → accepted, or → rejected / needs-approval). Every step is idempotent, so `recover()`
after a kill -9 anywhere simply continues each unfinished candidate from its saved state.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from collections.abc import Iterator

from pydantic import ValidationError

from supervisor.appendfile import DiskFullError, is_disk_full
from supervisor.baseline import BaselineCache
from supervisor.candidates import (CANDIDATE_PREFIX, REJECTED_PREFIX, CandidateError, CandidateRecord,
                                   CandidateStore, make_candidate_commit, now)
from supervisor.decision_log import DecisionLog, verdict_details
from supervisor.errors import ConfigError, OuroborosError
from supervisor.gate import GateResult, GateRunner
from supervisor.gate_config import CONFIG_FILE, GateConfig, parse_config
from supervisor.git_ops import GEN_TAG_PREFIX, MAIN_REF, ZERO, Git, GitError, RefMovedError, find_common_dir
from supervisor.journal_writer import JournalError, JournalWriter, verdict_note
from supervisor.protocol import Proposal
from supervisor.retention import enforce as enforce_retention
from supervisor.retention import prune_records
from supervisor.states import FINAL, IN_FLIGHT, CandidateState, MergeOutcome
from supervisor.trees import remove_tree
from supervisor.verdicts import RollbackResult, Verdict

ROLLED_BACK_PREFIX = "refs/ouroboros/rolled-back/"
MAX_REBASES = 5
# A gate the engine failed is tried again after a pause that doubles (5, 10, 20, 40 s): a restart
# takes seconds to tens of seconds, and a stopping engine still answers pings while it refuses
# containers, so the tries must span the restart rather than one second of it.
INFRA_BACKOFF_S = 5.0
INFRA_BACKOFF_MAX_S = 60.0
INFRA_TRIES = 5  # gate runs that fail for the engine's reasons before "infrastructure error"
MIN_FREE_BYTES = 4 * 1024 * 1024  # below this a failed write is a full disk, whatever git printed

_S = CandidateState


def infra_backoff_s(tries: int) -> float:
    """The pause before trying again a gate the engine has failed `tries` times."""
    return float(min(INFRA_BACKOFF_S * 2 ** (tries - 1), INFRA_BACKOFF_MAX_S))


class GateInterruptedError(OuroborosError, RuntimeError):
    """The engine was gone and a stop came while waiting for it: the candidate stays resumable."""


class RollbackError(OuroborosError, ValueError):
    """A rollback target is not a commit that passed the gate, or there is nothing to roll back to."""


class Gatekeeper:
    """The trusted API over one agent repository (bare or not); state in <git-common-dir>/ouroboros/."""

    def __init__(self, repo_path: Path, engine: Any = None, config: GateConfig | None = None,
                 journal_root: Path | None = None, image: str | None = None, instance: str = "default") -> None:
        self.common = find_common_dir(Path(repo_path))
        self.git = Git(self.common)
        self.state_dir = self.common / "ouroboros"
        self.worktrees = self.state_dir / "worktrees"
        self.scratch = self.state_dir / "tmp"
        self.reports = self.state_dir / "reports"
        for folder in (self.worktrees, self.scratch, self.reports):
            folder.mkdir(parents=True, exist_ok=True)
        self.store = CandidateStore(self.state_dir / "candidates")
        self.log = DecisionLog(self.state_dir / "decisions.jsonl")
        self.journal = JournalWriter(self._journal_root(journal_root))
        self._config = config
        self.runner = GateRunner(self.git, engine, self.scratch, image, instance)
        self.runner.work_area = self.worktrees  # capped in `supervisor start` (diskcap); recover() clears leftovers
        # Called when a gate failed for the engine's reasons, with the least pause to take first; True once
        # the engine answers again, False to give up for now (a stop came). The runner replaces it with one
        # that a stop interrupts and that shows the wait in status.
        self.engine_wait: Callable[[float], bool] = self._wait_for_engine
        self.warn: Callable[[str], None] = lambda message: None
        self.baselines = BaselineCache(self.reports, lambda message: self.warn(message))  # warn is replaced later
        dangerous = self.git.dangerous_config()
        if dangerous:
            raise ConfigError(f"the repository config defines {', '.join(dangerous)}, which could run programs "
                              f"during gating; remove them with `git config --unset`")

    def _journal_root(self, given: Path | None) -> Path:
        """The agent's memory journal; remembered, so operator commands journal to the same place."""
        remembered = self.state_dir / "journal-root"
        if given is not None:
            if not remembered.exists() or remembered.read_text() != str(Path(given).resolve()):
                remembered.write_text(str(Path(given).resolve()))
            return Path(given)
        if remembered.exists():
            return Path(remembered.read_text())
        return self.state_dir / "memory" / "journal"

    # -- reading state ----------------------------------------------------------------------

    def main(self) -> str:
        main = self.git.ref_value(MAIN_REF)
        if main is None:
            raise GitError(f"{self.common} has no main branch; create it first (supervisor init)")
        return main

    def generations(self) -> dict[int, str]:
        tags = self.git.refs(GEN_TAG_PREFIX.rstrip("/"))
        return {int(ref[len(GEN_TAG_PREFIX):]): sha for ref, sha in tags.items()
                if ref[len(GEN_TAG_PREFIX):].isdigit()}

    def generation_of(self, commit: str) -> int | None:
        names = [ref[len(GEN_TAG_PREFIX):] for ref in self.git.refs_at(commit, GEN_TAG_PREFIX.rstrip("/"))]
        numbers = [int(name) for name in names if name.isdigit()]
        return max(numbers) if numbers else None

    def config(self, rev: str | None = None) -> GateConfig:
        """The gate config as committed at `rev` (default main); defaults if the file is absent."""
        if self._config is not None:
            return self._config
        data = self.git.read_blob(rev or self.main(), CONFIG_FILE)
        return parse_config(data.decode(errors="replace"), f"{CONFIG_FILE} at {(rev or 'main')[:12]}") if data else GateConfig()

    # -- candidates -------------------------------------------------------------------------

    def create_candidate(self) -> CandidateRecord:
        """A new branch `ouroboros/candidate/<gen>-<n>` at main, checked out in its own worktree."""
        main = self.main()
        gen = self.generation_of(main) or 0
        n = self.store.next_n(gen)
        while True:
            candidate_id = f"{gen}-{n}"
            if not self.store.exists(candidate_id):
                try:
                    self.git.update_ref(CANDIDATE_PREFIX + candidate_id, main, ZERO, "ouroboros: new candidate")
                    break
                except RefMovedError:
                    pass
            n += 1
        path = self.worktrees / candidate_id
        record = CandidateRecord(id=candidate_id, gen=gen, n=n, base=main, worktree=str(path),
                                 created_at=now(), updated_at=now())
        self.store.save(record)
        self._remove_tree(path)
        self.git.run("worktree", "add", "--quiet", str(path), CANDIDATE_PREFIX.removeprefix("refs/heads/") + candidate_id)
        record.gitfile = (path / ".git").read_text()  # written by git a moment ago; the agent has not run yet
        return self.store.save(record)

    def submit(self, candidate: CandidateRecord | str, proposal: Proposal) -> Verdict:
        """Commit the candidate's workspace with the proposal's message, gate it, merge or reject it."""
        record = self.store.load(candidate if isinstance(candidate, str) else candidate.id)
        if record.state != _S.PENDING:
            raise CandidateError(f"candidate {record.id} is {record.state}, not pending; create a new candidate")
        self.store.index_proposal(proposal.id, record.id)  # before the state: a kill leaves it findable
        record.proposal = proposal
        record.change_state(_S.COMMITTING)
        self.store.save(record)
        return self._advance(record)

    def resume(self, record: CandidateRecord) -> Verdict:
        """Continue a candidate a kill, a stop, a full disk or the engine interrupted."""
        return self._advance(record)

    def approve(self, candidate_id: str) -> Verdict:
        """Let a candidate that changes existing tests (and passed every gate pass) reach main."""
        record = self._waiting(candidate_id)
        record.approved = True
        record.change_state(_S.MERGING)
        self.store.save(record)
        self._log_once("approved", record)
        return self._advance(record)

    def reject(self, candidate_id: str, reason: str = "rejected by the operator") -> Verdict:
        record = self.store.load(candidate_id)
        if record.state in FINAL:
            raise CandidateError(f"candidate {candidate_id} is already {record.state}")
        self._reject(record, [reason])
        return self.verdict(record)

    def abandon(self, candidate_id: str, reason: str) -> CandidateRecord:
        """Drop a pending candidate (no proposal came, or main moved under it): worktree and branch go."""
        record = self.store.load(candidate_id)
        if record.state != _S.PENDING:
            raise CandidateError(f"candidate {candidate_id} is {record.state}; only pending candidates are abandoned")
        record.reasons = [reason]
        self._finish(record, _S.ABANDONED)
        return record

    def _waiting(self, candidate_id: str) -> CandidateRecord:
        record = self.store.load(candidate_id)
        if record.state != _S.NEEDS_APPROVAL:
            raise CandidateError(f"candidate {candidate_id} is {record.state}; only needs-approval candidates "
                                 f"can be approved")
        return record

    def verdict(self, record: CandidateRecord) -> Verdict:
        gate = record.gate
        return Verdict(candidate=record.id, state=record.state.value, commit=record.commit, generation=record.generation,
                       reasons=list(record.reasons), failures=gate.failures if gate else [],
                       protected=gate.protected if gate else [])

    # -- the state machine ------------------------------------------------------------------

    def _advance(self, record: CandidateRecord) -> Verdict:
        rebases = 0
        while record.state in IN_FLIGHT:
            if record.state == _S.COMMITTING:
                self._commit(record)
            elif record.state == _S.GATING:
                self._gate(record)
            elif self._merge(record) is MergeOutcome.REBASED:
                rebases += 1
                if rebases > MAX_REBASES:
                    self._reject(record, [f"main moved {MAX_REBASES} times while this was gated; propose again"])
        return self.verdict(record)

    def _commit(self, record: CandidateRecord) -> None:
        if record.proposal is None:  # only a hand-edited record can lack it
            self._reject(record, ["the candidate record has no proposal to commit"])
            return
        try:
            config = self.config(record.base)
            commit, snapshot = make_candidate_commit(self.git, record, config, self.scratch,
                                                     record.proposal.commit_message())
        except (OuroborosError, ValidationError, OSError) as exc:  # fail closed: what cannot be committed is rejected
            self._unless_disk_full(exc)
            self._reject(record, [f"the workspace could not be committed: {exc}"])
            return
        self._move(record.branch, commit)
        record.commit, record.refused = commit, snapshot.refused
        if snapshot.refused:
            self._reject(record, ["workspace tricks refused: " + "; ".join(snapshot.refused)])
        elif self.git.tree_of(commit) == self.git.tree_of(record.base):
            self._reject(record, ["the proposal changes nothing outside memory paths"])
        else:
            record.change_state(_S.GATING)
            self.store.save(record)

    def _unless_disk_full(self, exc: BaseException) -> None:
        """A full disk is never the candidate's fault: raise DiskFullError instead of a verdict."""
        if is_disk_full(exc) or self.disk_full():
            raise DiskFullError(28, f"no space left under {self.state_dir} ({exc}); free disk space, "
                                    "gating resumes by itself") from exc

    def disk_full(self) -> bool:
        """Less than MIN_FREE_BYTES left where the state lives (a failed write there is then the disk's fault)."""
        try:
            info = os.statvfs(self.state_dir)
        except OSError:
            return False
        return info.f_bavail * info.f_frsize < MIN_FREE_BYTES

    def _gate(self, record: CandidateRecord) -> None:
        if record.commit is None:
            self._reject(record, ["the candidate record has no commit to gate"])
            return
        base = self.git.parents(record.commit)[0]
        try:
            config = self.config(base)
            result = self.runner.judge(record.commit, base, config, self._baseline)
        except (OuroborosError, ValidationError, OSError) as exc:  # fail closed: a gate that could not run is a rejection
            self._unless_disk_full(exc)
            self._reject(record, [f"the gate could not run: {exc}"])
            return
        if not result.passed and self.disk_full():  # whatever failed, a full disk is never the candidate's fault
            raise DiskFullError(28, f"no space left under {self.state_dir}; free disk space, gating resumes by itself")
        if self._infrastructure_failed(result):
            self._after_infrastructure_failure(record, result)
            return
        record.gate = result
        record.reasons = list(result.reasons)
        if not result.passed:
            self._reject(record, result.reasons)
        elif result.needs_approval and not record.approved:
            record.change_state(_S.NEEDS_APPROVAL)
            self._remove_worktree(record)
            self.store.save(record)
            if self._log_once("needs-approval", record):
                self._journal(record, "gate-needs-approval")
        else:
            record.change_state(_S.MERGING)
            self.store.save(record)

    def _infrastructure_failed(self, result: GateResult) -> bool:
        """The engine, not the candidate, failed this gate: a pass it could not run, or it stopped answering."""
        if result.passed:
            return False
        if any(p.infrastructure for p in result.passes):  # set by the gate for engine errors only
            return True
        engine = self.runner.engine
        return engine is not None and hasattr(engine, "ping") and not engine.ping()

    def _after_infrastructure_failure(self, record: CandidateRecord, result: GateResult) -> None:
        record.infra_tries += 1
        why = "; ".join(result.reasons)[:300] or "the engine stopped answering"
        self.store.save(record)
        self.warn(f"candidate {record.id}: the gate failed for the engine's reasons ({why}); "
                  f"try {record.infra_tries} of {INFRA_TRIES}")
        if record.infra_tries >= INFRA_TRIES:
            record.reasons = [f"infrastructure error: the container engine failed the gate {INFRA_TRIES} times "
                              f"({why}); this says nothing about the proposal, propose it again"]
            self._finish(record, _S.INFRASTRUCTURE_ERROR)
            return
        if not self.engine_wait(infra_backoff_s(record.infra_tries)):
            raise GateInterruptedError(f"candidate {record.id} waits for the engine; the next start resumes it")

    def _wait_for_engine(self, pause_s: float = 0.0, limit_s: float = 120) -> bool:
        time.sleep(pause_s)
        engine = self.runner.engine
        deadline, delay = time.monotonic() + limit_s, 0.5
        while engine is not None and hasattr(engine, "ping") and not engine.ping():
            if time.monotonic() > deadline:
                return True  # try again anyway: after INFRA_TRIES it is recorded, never blamed
            time.sleep(delay)
            delay = min(delay * 2, 10)
        return True

    def _merge(self, record: CandidateRecord) -> MergeOutcome:
        gate = record.gate
        if record.commit is None or gate is None or not gate.passed or gate.commit != record.commit:
            record.change_state(_S.GATING)  # never merge a commit this record has no passing gate for
            self.store.save(record)
            return MergeOutcome.REGATE
        commit = record.commit
        with self._merge_lock():
            main = self.main()
            base = self.git.parents(commit)[0]
            # A commit made on main (the usual case) is not in it; else a kill after the move may
            # have left it in main already (asked only then: the ancestry walk grows with the lineage).
            merged = base != main and (commit == main or self.git.is_ancestor(commit, main))
            if not merged:
                if base != main:
                    return self._rebase(record, base, main)
                try:
                    self.git.update_ref(MAIN_REF, commit, main, f"ouroboros: accept {record.id}")
                except RefMovedError:
                    return MergeOutcome.RACED  # main moved between our read and the swap: loop and rebase
            record.generation = self._tag(commit)
        self.baselines.store(commit, gate.test_ids)
        self._finish(record, _S.ACCEPTED, main_before=main)
        return MergeOutcome.ACCEPTED

    def _rebase(self, record: CandidateRecord, old_base: str, main: str) -> MergeOutcome:
        tree = self.git.merge_trees(old_base, main, record.commit or "", self.scratch)
        if tree is None:
            self._reject(record, [f"conflicts with main {main[:12]}, which moved since the candidate was made"])
            return MergeOutcome.REJECTED
        if tree == self.git.tree_of(main):
            self._reject(record, ["main already holds this change"])
            return MergeOutcome.REJECTED
        rebased = self.git.commit_tree(tree, [main], self.git.message(record.commit or ""))
        self._move(record.branch, rebased)
        record.commit = rebased
        record.change_state(_S.GATING)
        self.store.save(record)
        return MergeOutcome.REBASED

    def _tag(self, commit: str) -> int:
        generations = self.generations()  # one listing: it grows with the lineage
        existing = [n for n, sha in generations.items() if sha == commit]
        if existing:
            return max(existing)
        number = max(generations, default=0) + 1
        while True:
            try:
                self.git.update_ref(f"{GEN_TAG_PREFIX}{number}", commit, ZERO, "ouroboros: generation")
                return number
            except RefMovedError:
                number += 1

    def _reject(self, record: CandidateRecord, reasons: list[str]) -> None:
        record.reasons = reasons
        if record.commit and record.commit != record.base:
            self._move(record.rejected_ref, record.commit)
        self._finish(record, _S.REJECTED)
        enforce_retention(self.git, lambda: self.config().retention, self.state_dir)

    def _finish(self, record: CandidateRecord, state: CandidateState, main_before: str | None = None) -> None:
        """Final bookkeeping; each part is skipped if already done, so it can be re-run after a crash."""
        self._remove_worktree(record)
        branch_value = self.git.ref_value(record.branch)
        if branch_value:
            self.git.delete_ref(record.branch, branch_value)
        record.change_state(state)
        if self._log_once(state.value, record, main_before=main_before):
            self._journal(record, f"gate-{state.value}")
        self.store.save(record)

    # -- bookkeeping ------------------------------------------------------------------------

    def _move(self, ref: str, new: str) -> None:
        current = self.git.ref_value(ref)
        if current != new:
            self.git.update_ref(ref, new, current or ZERO)

    def _log_once(self, kind: str, record: CandidateRecord, main_before: str | None = None) -> bool:
        if self.log.find_recent(kind, candidate=record.id, commit=record.commit):
            return False
        self.log.append(kind, candidate=record.id, commit=record.commit, main_before=main_before,
                        main_after=self.git.ref_value(MAIN_REF), generation=record.generation,
                        reasons=record.reasons, details=verdict_details(record))
        return True

    def _journal(self, record: CandidateRecord, kind: str) -> None:
        self._note(kind, verdict_note(record), candidate=record.id)

    def _note(self, kind: str, body: str, candidate: str | None = None) -> None:
        """Journal for the agent; the agent can break its own journal, which must not block a decision."""
        try:
            self.journal.write(kind, body)
        except (JournalError, OSError) as exc:
            self.log.append("journal-refused", candidate=candidate, reasons=[str(exc)[:300]])

    def _baseline(self, base: str, config: GateConfig) -> dict[str, str] | None:
        return self.baselines.get(base, lambda: self.runner.baseline(base, config))

    def _remove_worktree(self, record: CandidateRecord) -> None:
        path = Path(record.worktree)
        if path.parent == self.worktrees:
            self._remove_tree(path)
        self.git.run("worktree", "prune", check=False)

    def _remove_tree(self, path: Path) -> None:
        remove_tree(path, self.warn)

    @contextmanager
    def _merge_lock(self) -> Iterator[None]:
        """Keeps CAS + tag of one supervisor in order; the CAS itself still guards against outsiders."""
        with open(self.state_dir / "merge.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    # -- generation 0, ad-hoc gating, rollback, recovery ---------------------------------------

    def genesis(self) -> int:
        """Make sure main is a gated generation; returns its number.

        With no generation yet, main is gated and tagged `gen/0`. If main was moved by hand (an
        operator's commit), it is gated and adopted as the next generation; failing, it is refused.
        """
        main = self.main()
        known = self.generation_of(main)
        if known is not None:
            return known
        result = self.gate_rev(main)
        if not result.passed:
            raise OuroborosError(f"main {main[:12]} does not pass its own gate: {'; '.join(result.reasons)}; "
                                 f"fix main (or `supervisor rollback`) before starting the agent")
        first = not self.generations()
        with self._merge_lock():
            if first:
                self.git.update_ref(f"{GEN_TAG_PREFIX}0", main, ZERO, "ouroboros: generation 0")
            generation = 0 if first else self._tag(main)
        self.baselines.store(main, result.test_ids)
        self.log.append("genesis" if first else "adopted", commit=main, main_after=main, generation=generation)
        return generation

    def gate_rev(self, rev: str, base: str | None = None, config: GateConfig | None = None) -> GateResult:
        """Run the gate on any commit (with a base: also protected paths, no-shrink, base's own tests)."""
        commit = self.git.rev_parse(rev)
        if commit is None:
            raise GitError(f"{rev!r} names no commit in {self.common}; check `git log`")
        base_commit = None
        if base is not None:
            base_commit = self.git.rev_parse(base)
            if base_commit is None:
                raise GitError(f"base {base!r} names no commit in {self.common}")
        config = config or self._config or self._config_at(base_commit or commit)
        if base_commit == commit:
            base_commit = None
        return self.runner.judge(commit, base_commit, config, self._baseline)

    def _config_at(self, rev: str) -> GateConfig:
        data = self.git.read_blob(rev, CONFIG_FILE)
        return parse_config(data.decode(errors="replace"), f"{CONFIG_FILE} at {rev[:12]}") if data else GateConfig()

    def passed_commits(self) -> set[str]:
        """Commits that passed the gate: generation tags plus accepted/genesis records of the log."""
        passed = set(self.generations().values())
        passed |= {r.commit for r in self.log.records() if r.kind in ("accepted", "genesis", "adopted") and r.commit}
        return passed

    def rollback(self, to: str | None = None) -> RollbackResult:
        """Move main back to a commit that passed the gate (default: the previous generation)."""
        main = self.main()
        target = self._rollback_target(main, to)
        current_gen = self.generation_of(main)
        label = str(current_gen) if current_gen is not None else main[:12]
        with self._merge_lock():
            kept = self._free_ref(ROLLED_BACK_PREFIX + label)
            self.git.update_ref(kept, main, ZERO, "ouroboros: keep rolled-back generation")
            self.git.update_ref(MAIN_REF, target, main, "ouroboros: rollback")
        generation = self.generation_of(target)
        self.log.append("rollback", commit=target, main_before=main, main_after=target, generation=generation,
                        details={"kept_as": kept})
        self._note("rollback", f"main rolled back from {main} (generation {current_gen}) to {target} "
                                       f"(generation {generation}). The rolled-back commits stay at {kept}.")
        return RollbackResult(previous=main, target=target, generation=generation, kept_as=kept)

    def _rollback_target(self, main: str, to: str | None) -> str:
        gens = self.generations()
        if to is None:
            current = self.generation_of(main)
            older = [n for n, sha in gens.items() if sha != main and (current is None or n < current)]
            if not older:
                raise RollbackError("there is no earlier generation to roll back to; see `git tag -l 'gen/*'`")
            return gens[max(older)]
        text = to.removeprefix("gen/")
        target = gens.get(int(text)) if text.isdigit() and int(text) in gens else self.git.rev_parse(to)
        if target is None:
            raise RollbackError(f"{to!r} is neither a generation number nor a commit; see `supervisor log`")
        if target == main:
            raise RollbackError(f"main is already at {target[:12]}; nothing to do")
        if target in set(self.git.refs(REJECTED_PREFIX.rstrip("/")).values()) and target not in gens.values():
            raise RollbackError(f"{target[:12]} was rejected by the gate; roll back only to a passed generation")
        if target not in self.passed_commits():
            raise RollbackError(f"{target[:12]} never passed the gate; pick a generation from `git tag -l 'gen/*'`")
        return target

    def _free_ref(self, ref: str) -> str:
        suffix, candidate = 1, ref
        while self.git.ref_value(candidate) is not None:
            suffix += 1
            candidate = f"{ref}-{suffix}"
        return candidate

    def recover(self, abandon_pending: bool = True) -> list[str]:
        """After a crash: finish or redo half-done steps, drop stale worktrees and scratch; returns actions.

        Reads only the live candidates (finished ones are archived), so a start costs the same after
        ten candidates or ten thousand.
        """
        actions: list[str] = []
        torn = self.log.repair()
        if torn:
            actions.append(torn)
        actions += self.journal.repair_tails()  # the agent is not running: its journal holds still
        self._remove_tree(self.scratch)
        self.scratch.mkdir(parents=True, exist_ok=True)
        # Before any gate resumes: what a killed run left in the (capped) worktree area that belongs
        # to no active candidate, acceptance folders above all, would fill the area under that gate.
        active = {record.id for record in self.store.active()}
        for path in self.worktrees.iterdir():
            if path.name not in active:
                self._remove_tree(path)
                actions.append(f"removed stale worktree {path.name}")
        live: set[str] = set()
        for record in self.store.active():
            if record.state == _S.PENDING and abandon_pending:
                self.abandon(record.id, "the supervisor restarted before a proposal arrived")
                actions.append(f"abandoned {record.id}")
                continue
            if record.state in IN_FLIGHT:
                verdict = self._advance(record)
                actions.append(f"resumed {record.id}: {verdict.state}")
            if record.state == _S.PENDING:
                live.add(record.id)
        actions += [f"unreadable candidate record {path}; move it aside" for path in self.store.corrupt]
        for path in self.worktrees.iterdir():
            if path.name not in live:
                self._remove_tree(path)
                actions.append(f"removed stale worktree {path.name}")
        self.git.run("worktree", "prune", check=False)
        known = {r.id for r in self.store.active()}
        for ref, sha in self.git.refs(CANDIDATE_PREFIX.rstrip("/")).items():
            if ref.removeprefix(CANDIDATE_PREFIX) not in known:
                self.git.delete_ref(ref, sha)
                actions.append(f"deleted orphan branch {ref}")
        return actions

    def maintain(self) -> None:
        """Pack loose refs and objects (the repository config turns automatic gc off): run now and then."""
        self.git.run("pack-refs", "--all", "--prune", check=False, timeout_s=600)
        self.git.run("gc", "--quiet", "--prune=2.weeks.ago", check=False, timeout_s=1800)
        _moved, error = prune_records(self.state_dir, lambda: self.config().retention)  # accepted ones too
        if error:
            logging.getLogger("ouroboros.gatekeeper").warning("%s", error)
