"""What reaches `main`: proposal → commit → gate → compare-and-swap merge, or reject; and rollback.

Each candidate moves through states saved to disk before each step (pending → committing → gating
→ merging → accepted, or → rejected / needs-approval). Every step is idempotent, so `recover()`
after a kill -9 anywhere simply continues each unfinished candidate from its saved state.

This module is the API and the state machine, and the one place that changes a candidate's record
and writes the decision log and the journal. Its parts live beside it and return what they did,
never calling back: the merge, rebase and generation tag (`merge`), the engine's and the disk's
weather during a gate (`outages`), generation 0 and adopting a main moved by hand (`adoption`),
rollback (`rollback`) and recovery (`recovery`).
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

from pydantic import ValidationError

from sandbox.engine import Engine
from supervisor.base.appendfile import DiskFullError
from supervisor.base.errors import ConfigError, OuroborosError
from supervisor.base.git_ops import MAIN_REF, ZERO, Git, RefMovedError, find_common_dir
from supervisor.base.remove_tree import remove_tree
from supervisor.gate import adoption, merge, outages, recovery, upkeep
from supervisor.gate.config import CONFIG_FILE, GateConfig, parse_config
from supervisor.gate.generations import GenerationTags
from supervisor.gate.merge import MainLine, MergeStep
from supervisor.gate.on_demand import DockerOnDemand
from supervisor.gate.outages import INFRA_TRIES, EngineWait, GateInterruptedError, infra_backoff_s
from supervisor.gate.passes import GateRunner, GateSite
from supervisor.gate.recovery import Recovery
from supervisor.gate.retention import enforce as enforce_retention
from supervisor.gate.rollback import roll_back
from supervisor.gate.scratch import beside_supervisor
from supervisor.gate.workspace_commit import make_candidate_commit
from supervisor.store.baseline import BaselineCache
from supervisor.store.candidates import CANDIDATE_PREFIX, CandidateError, CandidateRecord, CandidateStore, now
from supervisor.store.decision_kinds import DecisionKind
from supervisor.store.decision_log import DecisionLog, verdict_details
from supervisor.store.gate_results import GateResult
from supervisor.store.journal_writer import JournalWriter, journal_note, verdict_note
from supervisor.store.protocol import Proposal
from supervisor.store.states import FINAL, IN_FLIGHT, CandidateState, MergeOutcome
from supervisor.store.verdicts import RollbackResult, Verdict

MAX_REBASES = 5
_S = CandidateState

log = logging.getLogger(__name__)


def _warn(message: str) -> None:
    log.warning("%s", message)


class Gatekeeper:
    """The trusted API over one agent repository (bare or not); state in <git-common-dir>/ouroboros/."""

    def __init__(
        self,
        repo_path: Path,
        *,
        engine: Engine | None = None,
        image: str | None = None,
        instance: str = "default",
        config: GateConfig | None = None,
        journal_root: Path | None = None,
        engine_wait: EngineWait | None = None,
        gate_folder: Path | None = None,
    ) -> None:
        """`engine`: None connects to Docker when a gate first runs a container; `image`: None finds
        or builds the agent image then. `engine_wait` is called when a gate failed for the engine's
        reasons, with the least pause to take first (True once the engine answers again, False to give
        up for now); a supervisor gives one that a stop interrupts. `gate_folder`: gate in this folder
        of `scratch.own_scratch`, beside whatever supervisor runs the repository."""
        self.common = find_common_dir(Path(repo_path))
        self.git = Git(self.common)
        self.tags = GenerationTags(self.git)
        self.state_dir = self.common / "ouroboros"
        self.main_line = MainLine(self.git, self.tags, self.state_dir)
        self.worktrees = self.state_dir / "worktrees"
        self.scratch = self.state_dir / "tmp"
        self.reports = self.state_dir / "reports"
        for folder in (self.worktrees, self.scratch, self.reports):
            folder.mkdir(parents=True, exist_ok=True)
        self.store = CandidateStore(self.state_dir / "candidates")
        self.log = DecisionLog(self.state_dir / "decisions.jsonl")
        self.journal = JournalWriter(self._journal_root(journal_root))
        self._config = config
        engine = engine or DockerOnDemand()
        # The worktree area is capped in `supervisor start` (diskcap); recover() clears leftovers.
        site = GateSite(self.scratch, self.worktrees, instance)
        self.gate_runner = GateRunner(
            self.git, engine, beside_supervisor(instance, gate_folder) if gate_folder else site, image=image
        )
        self._engine_wait = engine_wait or partial(outages.wait_for_engine, engine)
        self.baselines = BaselineCache(self.reports, _warn)
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
        return self.main_line.main()

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
            elif self._merge(record) is MergeOutcome.REBASED:
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

    def _merge(self, record: CandidateRecord) -> MergeOutcome:
        """One merge attempt (merge.py), and what it means for the record."""
        step = merge.merge(self.main_line, record, self.scratch)
        if step.outcome is MergeOutcome.ACCEPTED:
            self._accepted(record, step)
        elif step.outcome is MergeOutcome.REJECTED:
            self.reject_record(record, [step.reason or "the merge was refused"])
        elif step.outcome in (MergeOutcome.REBASED, MergeOutcome.REGATE):
            record.commit = step.commit or record.commit
            record.change_state(_S.GATING)
            self.store.save(record)
        return step.outcome

    def _accepted(self, record: CandidateRecord, step: MergeStep) -> None:
        record.generation = step.generation
        if record.gate is not None:
            self.baselines.store(step.commit or "", record.gate.test_ids)
        self.finish(record, _S.ACCEPTED, main_before=step.main_before)

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
            result = self.gate_runner.judge(record.commit, base, config, self.baseline)
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
        if outages.engine_failed(result, self.gate_runner.engine):
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
        log.warning(
            "candidate %s: the gate failed for the engine's reasons (%s); try %d of %d",
            record.id,
            why,
            record.infra_tries,
            INFRA_TRIES,
        )
        if record.infra_tries >= INFRA_TRIES:
            record.reasons = [
                f"infrastructure error: the container engine failed the gate {INFRA_TRIES} times "
                f"({why}); this says nothing about the proposal, propose it again"
            ]
            self.finish(record, _S.INFRASTRUCTURE_ERROR)
            return
        if not self._engine_wait(infra_backoff_s(record.infra_tries)):
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
        journal_note(self.journal, self.log, kind, verdict_note(record), candidate=record.id)

    def baseline(self, base: str, config: GateConfig) -> dict[str, str] | None:
        return self.baselines.get(base, lambda: self.gate_runner.baseline(base, config))

    def _remove_worktree(self, record: CandidateRecord) -> None:
        path = Path(record.worktree)
        if path.parent == self.worktrees:
            self._remove_tree(path)
        self.git.run("worktree", "prune", check=False)

    def _remove_tree(self, path: Path) -> None:
        remove_tree(path, _warn)

    # -- generation 0, ad-hoc gating, rollback, recovery (their parts in their own modules) ---

    def genesis(self) -> int:
        """Make sure main is a gated generation; returns its number (see adoption.py)."""
        main = self.main()
        known = self.generation_of(main)
        if known is not None:
            return known
        result = self.gate_rev(main)
        if not result.passed:
            raise OuroborosError(
                f"main {main[:12]} does not pass its own gate: {'; '.join(result.reasons)}; "
                f"fix main (or `supervisor rollback`) before starting the agent"
            )
        adopted = adoption.adopt(self.main_line, main)
        self.baselines.store(main, result.test_ids)
        self.log.append(adopted.how, commit=main, main_after=main, generation=adopted.generation)
        return adopted.generation

    def gate_rev(self, rev: str, base: str | None = None, config: GateConfig | None = None) -> GateResult:
        """Run the gate on any commit (with a base: also protected paths, no-shrink, base's own tests)."""
        commit, base_commit = adoption.gate_target(self.git, rev, base)
        config = config or self.config(base_commit or commit)  # the fixed config if one was given, else the rev's
        return self.gate_runner.judge(commit, base_commit, config, self.baseline)

    def rollback(self, to: str | None = None) -> RollbackResult:
        """Move main back to a commit that passed the gate (default: the previous generation)."""
        result = roll_back(self.main_line, self.log, to)
        main, kept = result.previous, result.kept_as
        self.log.append(
            DecisionKind.ROLLBACK,
            commit=result.target,
            main_before=main,
            main_after=result.target,
            generation=result.generation,
            details={"kept_as": kept},
        )
        journal_note(
            self.journal,
            self.log,
            "rollback",
            f"main rolled back from {main} (generation {self.generation_of(main)}) to {result.target} "
            f"(generation {result.generation}). The rolled-back commits stay at {kept}.",
        )
        return result

    def recover(self, abandon_pending: bool = True) -> list[str]:
        """After a crash: finish or redo half-done steps, drop stale worktrees and scratch; returns actions."""
        actions = recovery.repair_records(self.log, self.journal)
        recovery.clear_scratch(self.scratch)
        # Before any gate resumes: what a killed run left in the (capped) worktree area that belongs
        # to no active candidate, acceptance folders above all, would fill the area under that gate.
        actions += recovery.remove_worktrees_except(self.worktrees, {record.id for record in self.store.active()})
        live: set[str] = set()
        for record in self.store.active():
            step = recovery.triage(record.state, abandon_pending)
            if step is Recovery.ABANDON:
                self.abandon(record.id, "the supervisor restarted before a proposal arrived")
                actions.append(f"abandoned {record.id}")
                continue
            if step is Recovery.RESUME:
                actions.append(f"resumed {record.id}: {self.resume(record).state}")
            if record.state == _S.PENDING:
                live.add(record.id)
        actions += [f"unreadable candidate record {path}; move it aside" for path in self.store.corrupt]
        actions += recovery.remove_worktrees_except(self.worktrees, live)
        return actions + recovery.delete_orphan_branches(self.git, {r.id for r in self.store.active()})

    def maintain(self) -> None:
        """Pack refs and objects, archive old records: run now and then (see upkeep.py)."""
        upkeep.maintain(self.git, self.state_dir, lambda: self.config().retention)
