"""What reaches `main`: proposal → commit → gate → compare-and-swap merge, or reject; and rollback.

Each candidate moves through states saved to disk before each step (pending → committing → gating
→ merging → accepted, or → rejected / needs-approval). Every step is idempotent, so `recover()`
after a kill -9 anywhere simply continues each unfinished candidate from its saved state.

This module is the API and the state machine; its parts live beside it: the merge, rebase and
generation tag (`merging`), the engine's and the disk's weather during a gate (`gate_weather`),
generation 0 and one-off gating (`genesis`), rollback (`rollback`) and recovery (`recovery`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from supervisor.base import periodic
from supervisor.base.appendfile import DiskFullError
from supervisor.base.errors import ConfigError, OuroborosError
from supervisor.base.git_ops import MAIN_REF, ZERO, Git, GitError, RefMovedError, find_common_dir
from supervisor.base.remove_tree import remove_tree
from supervisor.gate import merge, outages
from supervisor.gate.adoption import ensure_gated_main, gate_commit
from supervisor.gate.config import CONFIG_FILE, GateConfig, parse_config
from supervisor.gate.generations import GenerationTags
from supervisor.gate.outages import INFRA_TRIES, GateInterruptedError, infra_backoff_s
from supervisor.gate.passes import GateRunner
from supervisor.gate.recovery import recover_repository
from supervisor.gate.retention import enforce as enforce_retention
from supervisor.gate.retention import prune_records
from supervisor.gate.rollback import roll_back
from supervisor.gate.workspace_commit import make_candidate_commit
from supervisor.store.baseline import BaselineCache
from supervisor.store.candidates import CANDIDATE_PREFIX, CandidateError, CandidateRecord, CandidateStore, now
from supervisor.store.decision_kinds import DecisionKind
from supervisor.store.decision_log import DecisionLog, verdict_details
from supervisor.store.gate_results import GateResult
from supervisor.store.journal_writer import JournalError, JournalWriter, verdict_note
from supervisor.store.protocol import Proposal
from supervisor.store.states import FINAL, IN_FLIGHT, CandidateState, MergeOutcome
from supervisor.store.verdicts import RollbackResult, Verdict

MAX_REBASES = 5
FULL_GC_EVERY_S = 86_400  # a full gc of the repository at most once a day; geometric repacks between
PRUNE_AFTER = "2.weeks.ago"  # unreachable objects are dropped by a full gc once they are this old
_S = CandidateState


class Gatekeeper:
    """The trusted API over one agent repository (bare or not); state in <git-common-dir>/ouroboros/."""

    def __init__(
        self,
        repo_path: Path,
        engine: Any = None,
        config: GateConfig | None = None,
        journal_root: Path | None = None,
        image: str | None = None,
        instance: str = "default",
    ) -> None:
        self.common = find_common_dir(Path(repo_path))
        self.git = Git(self.common)
        self.tags = GenerationTags(self.git)
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
        self.engine_wait: Callable[[float], bool] = lambda pause_s: outages.wait_for_engine(self.runner.engine, pause_s)
        self.warn: Callable[[str], None] = lambda message: None
        self.baselines = BaselineCache(self.reports, lambda message: self.warn(message))  # warn is replaced later
        dangerous = self.git.dangerous_config()
        if dangerous:
            raise ConfigError(
                f"the repository config defines {', '.join(dangerous)}, which could run programs "
                f"during gating; remove them with `git config --unset`"
            )

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
        return self.tags.all()

    def latest_generation(self) -> tuple[int, str | None]:
        return self.tags.latest()

    def generation_of(self, commit: str) -> int | None:
        return self.tags.of(commit)

    def config(self, rev: str | None = None) -> GateConfig:
        """The gate config as committed at `rev` (default main); defaults if the file is absent."""
        if self._config is not None:
            return self._config
        data = self.git.read_blob(rev or self.main(), CONFIG_FILE)
        return (
            parse_config(data.decode(errors="replace"), f"{CONFIG_FILE} at {(rev or 'main')[:12]}")
            if data
            else GateConfig()
        )

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
        record = CandidateRecord(
            id=candidate_id, gen=gen, n=n, base=main, worktree=str(path), created_at=now(), updated_at=now()
        )
        self.store.save(record)
        self._remove_tree(path)
        self.git.run(
            "worktree", "add", "--quiet", str(path), CANDIDATE_PREFIX.removeprefix("refs/heads/") + candidate_id
        )
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
        self._log_once(DecisionKind.APPROVED, record)
        return self._advance(record)

    def reject(self, candidate_id: str, reason: str = "rejected by the operator") -> Verdict:
        record = self.store.load(candidate_id)
        if record.state in FINAL:
            raise CandidateError(f"candidate {candidate_id} is already {record.state}")
        self.reject_record(record, [reason])
        return self.verdict(record)

    def abandon(self, candidate_id: str, reason: str) -> CandidateRecord:
        """Drop a pending candidate (no proposal came, or main moved under it): worktree and branch go."""
        record = self.store.load(candidate_id)
        if record.state != _S.PENDING:
            raise CandidateError(f"candidate {candidate_id} is {record.state}; only pending candidates are abandoned")
        record.reasons = [reason]
        self.finish(record, _S.ABANDONED)
        return record

    def _waiting(self, candidate_id: str) -> CandidateRecord:
        record = self.store.load(candidate_id)
        if record.state != _S.NEEDS_APPROVAL:
            raise CandidateError(
                f"candidate {candidate_id} is {record.state}; only needs-approval candidates can be approved"
            )
        return record

    def verdict(self, record: CandidateRecord) -> Verdict:
        gate = record.gate
        return Verdict(
            candidate=record.id,
            state=record.state.value,
            commit=record.commit,
            generation=record.generation,
            reasons=list(record.reasons),
            failures=gate.failures if gate else [],
            protected=gate.protected if gate else [],
        )

    # -- the state machine ------------------------------------------------------------------

    def _advance(self, record: CandidateRecord) -> Verdict:
        rebases = 0
        while record.state in IN_FLIGHT:
            if record.state == _S.COMMITTING:
                self._commit(record)
            elif record.state == _S.GATING:
                self._gate(record)
            elif merge.merge(self, record) is MergeOutcome.REBASED:
                rebases += 1
                if rebases > MAX_REBASES:
                    self.reject_record(record, [f"main moved {MAX_REBASES} times while this was gated; propose again"])
        return self.verdict(record)

    def _commit(self, record: CandidateRecord) -> None:
        if record.proposal is None:  # only a hand-edited record can lack it
            self.reject_record(record, ["the candidate record has no proposal to commit"])
            return
        try:
            config = self.config(record.base)
            commit, snapshot = make_candidate_commit(
                self.git, record, config, self.scratch, record.proposal.commit_message()
            )
        except (OuroborosError, ValidationError, OSError) as exc:  # fail closed: what cannot be committed is rejected
            outages.raise_if_disk_full(exc, self.state_dir)
            self.reject_record(record, [f"the workspace could not be committed: {exc}"])
            return
        merge.move_ref(self.git, record.branch, commit)
        record.commit, record.refused = commit, snapshot.refused
        if snapshot.refused:
            self.reject_record(record, ["workspace tricks refused: " + "; ".join(snapshot.refused)])
        elif self.git.tree_of(commit) == self.git.tree_of(record.base):
            self.reject_record(record, ["the proposal changes nothing outside memory paths"])
        else:
            record.change_state(_S.GATING)
            self.store.save(record)

    def disk_full(self) -> bool:
        """Too little space left where the state lives (a failed write there is then the disk's fault)."""
        return outages.disk_full(self.state_dir)

    def _gate(self, record: CandidateRecord) -> None:
        if record.commit is None:
            self.reject_record(record, ["the candidate record has no commit to gate"])
            return
        base = self.git.parents(record.commit)[0]
        try:
            config = self.config(base)
            result = self.runner.judge(record.commit, base, config, self.baseline)
        except (
            OuroborosError,
            ValidationError,
            OSError,
        ) as exc:  # fail closed: a gate that could not run is a rejection
            outages.raise_if_disk_full(exc, self.state_dir)
            self.reject_record(record, [f"the gate could not run: {exc}"])
            return
        if not result.passed and self.disk_full():  # whatever failed, a full disk is never the candidate's fault
            raise DiskFullError(28, f"no space left under {self.state_dir}; free disk space, gating resumes by itself")
        if outages.engine_failed(result, self.runner.engine):
            self._after_infrastructure_failure(record, result)
            return
        record.gate = result
        record.reasons = list(result.reasons)
        if not result.passed:
            self.reject_record(record, result.reasons)
        elif result.needs_approval and not record.approved:
            record.change_state(_S.NEEDS_APPROVAL)
            self._remove_worktree(record)
            self.store.save(record)
            if self._log_once(DecisionKind.NEEDS_APPROVAL, record):
                self._journal(record, "gate-needs-approval")
        else:
            record.change_state(_S.MERGING)
            self.store.save(record)

    def _after_infrastructure_failure(self, record: CandidateRecord, result: GateResult) -> None:
        record.infra_tries += 1
        why = "; ".join(result.reasons)[:300] or "the engine stopped answering"
        self.store.save(record)
        self.warn(
            f"candidate {record.id}: the gate failed for the engine's reasons ({why}); "
            f"try {record.infra_tries} of {INFRA_TRIES}"
        )
        if record.infra_tries >= INFRA_TRIES:
            record.reasons = [
                f"infrastructure error: the container engine failed the gate {INFRA_TRIES} times "
                f"({why}); this says nothing about the proposal, propose it again"
            ]
            self.finish(record, _S.INFRASTRUCTURE_ERROR)
            return
        if not self.engine_wait(infra_backoff_s(record.infra_tries)):
            raise GateInterruptedError(f"candidate {record.id} waits for the engine; the next start resumes it")

    def reject_record(self, record: CandidateRecord, reasons: list[str]) -> None:
        record.reasons = reasons
        if record.commit and record.commit != record.base:
            merge.move_ref(self.git, record.rejected_ref, record.commit)
        self.finish(record, _S.REJECTED)
        enforce_retention(self.git, lambda: self.config().retention, self.state_dir)

    def finish(self, record: CandidateRecord, state: CandidateState, main_before: str | None = None) -> None:
        """Final bookkeeping; each part is skipped if already done, so it can be re-run after a crash."""
        self._remove_worktree(record)
        branch_value = self.git.ref_value(record.branch)
        if branch_value:
            self.git.delete_ref(record.branch, branch_value)
        record.change_state(state)
        if self._log_once(DecisionKind(state.value), record, main_before=main_before):
            self._journal(record, f"gate-{state.value}")
        self.store.save(record)

    # -- bookkeeping ------------------------------------------------------------------------

    def _log_once(self, kind: DecisionKind, record: CandidateRecord, main_before: str | None = None) -> bool:
        if self.log.find_recent(kind, candidate=record.id, commit=record.commit):
            return False
        self.log.append(
            kind,
            candidate=record.id,
            commit=record.commit,
            main_before=main_before,
            main_after=self.git.ref_value(MAIN_REF),
            generation=record.generation,
            reasons=record.reasons,
            details=verdict_details(record),
        )
        return True

    def _journal(self, record: CandidateRecord, kind: str) -> None:
        self.note(kind, verdict_note(record), candidate=record.id)

    def note(self, kind: str, body: str, candidate: str | None = None) -> None:
        """Journal for the agent; the agent can break its own journal, which must not block a decision."""
        try:
            self.journal.write(kind, body)
        except (JournalError, OSError) as exc:
            self.log.append(DecisionKind.JOURNAL_REFUSED, candidate=candidate, reasons=[str(exc)[:300]])

    def baseline(self, base: str, config: GateConfig) -> dict[str, str] | None:
        return self.baselines.get(base, lambda: self.runner.baseline(base, config))

    def _remove_worktree(self, record: CandidateRecord) -> None:
        path = Path(record.worktree)
        if path.parent == self.worktrees:
            self._remove_tree(path)
        self.git.run("worktree", "prune", check=False)

    def _remove_tree(self, path: Path) -> None:
        remove_tree(path, self.warn)

    # -- generation 0, ad-hoc gating, rollback, recovery (each in its own module) -------------

    def genesis(self) -> int:
        """Make sure main is a gated generation; returns its number (supervisor/gate/adoption.py)."""
        return ensure_gated_main(self)

    def gate_rev(self, rev: str, base: str | None = None, config: GateConfig | None = None) -> GateResult:
        """Run the gate on any commit (with a base: also protected paths, no-shrink, base's own tests)."""
        return gate_commit(self, rev, base, config)

    def rollback(self, to: str | None = None) -> RollbackResult:
        """Move main back to a commit that passed the gate (default: the previous generation)."""
        return roll_back(self, to)

    def recover(self, abandon_pending: bool = True) -> list[str]:
        """After a crash: finish or redo half-done steps, drop stale worktrees and scratch; returns actions."""
        return recover_repository(self, abandon_pending)

    def maintain(self) -> None:
        """Pack loose refs and objects (the repository config turns automatic gc off): run now and then.

        The packs are merged geometrically (a pack is rewritten only when the newer ones together
        reach its size: each object is copied O(log n) times in all, so the work does not grow
        with the lineage as a gc each time did); a full gc, which rewrites every object and drops
        the unreachable ones, runs at most once a day."""
        self.git.run("pack-refs", "--all", "--prune", check=False, timeout_s=600)
        stamp = self.state_dir / "git-gc"
        if periodic.due(stamp, FULL_GC_EVERY_S):
            # --cruft: the unreachable objects go into a cruft pack that records each one's age and
            # that geometric repacks leave alone. Set loose instead, the next geometric repack rolled
            # them into a new pack, whose time the next gc gave them back: never two weeks old, never pruned.
            gc = ("gc", "--quiet", f"--prune={PRUNE_AFTER}")
            if (
                self.git.run(*gc, "--cruft", check=False, timeout_s=1800).returncode == 0
                or self.git.run(*gc, check=False, timeout_s=1800).returncode == 0
            ):  # a git before 2.37
                periodic.done(stamp)
        else:
            self.git.run("repack", "-d", "-q", "--geometric=2", check=False, timeout_s=1800)
        _moved, error = prune_records(self.state_dir, lambda: self.config().retention)  # accepted ones too
        if error:
            logging.getLogger("ouroboros.gatekeeper").warning("%s", error)
