"""From the outbox to a verdict, one proposal at a time, and the agent's restart after each.

Nothing is gated before what an earlier run left is recovered. The agent is stopped before its
workspace is judged; a proposal file leaves the outbox only after its verdict is on disk; whatever
else was queued on the judged workspace is dropped. A full disk pauses all of it (status says so)
and is retried, never turned into a verdict.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from pathlib import Path

from supervisor.base import heap_trim
from supervisor.base.appendfile import is_disk_full
from supervisor.base.errors import OuroborosError
from supervisor.gate.gatekeeper import Gatekeeper
from supervisor.loop import outbox
from supervisor.loop.agent_lifecycle import AgentLifecycle
from supervisor.loop.agent_process import AgentKeeper
from supervisor.loop.intake import Intake
from supervisor.loop.outage_wait import DiskWeather, StopFlag
from supervisor.loop.reporting import StatusBoard, Tally
from supervisor.store.candidates import CandidateError, CandidateRecord
from supervisor.store.protocol import Proposal
from supervisor.store.states import CandidateState, SupervisorState
from supervisor.store.verdicts import Verdict, VerdictSummary

MAINTAIN_EVERY = 200  # verdicts between `git pack-refs` + `git gc` (the repository turns auto-gc off)
MAINTAIN_AFTER_S = 6 * 3600.0
_S = SupervisorState


class ProposalFlow:
    """Gates what is in the outbox; `intake` is set once the outbox is ready."""

    def __init__(
        self,
        gatekeeper: Gatekeeper,
        keeper: AgentKeeper,
        lifecycle: AgentLifecycle,
        board: StatusBoard,
        tally: Tally,
        disk_weather: DiskWeather,
        stop: StopFlag,
        stopping: Callable[[], bool],
        progress: Callable[[str], None],
    ) -> None:
        self.gatekeeper = gatekeeper
        self.keeper = keeper
        self.lifecycle = lifecycle
        self.board = board
        self.tally = tally
        self.disk_weather = disk_weather
        self.stop = stop
        self.stopping = stopping  # a stop was asked for, or the run's `stop_when` says it is done
        self.progress = progress
        self.intake: Intake | None = None
        self.recovered = False
        self._maintained_at = time.monotonic()
        self._verdicts_since_maintenance = 0

    def handle(self) -> None:
        """Gate what is in the outbox; a full disk pauses gating (status says so) instead of deciding."""
        if self.disk_weather.paused:
            if time.monotonic() < self.disk_weather.retry_at:
                return
            if self.gatekeeper.disk_full():
                self.disk_weather.pause(OSError(errno.ENOSPC, "still no space left"))
                return
        try:
            if not self.recovered:
                self.recover()
                if not self.recovered:
                    return
            self._gate_pending()
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            self.disk_weather.pause(exc)
            return
        if self.disk_weather.paused:
            self.progress("there is disk space again: gating resumes")
            self.board.set_state(_S.RUNNING, "")
            if self.keeper.agent is None and not self.stop.requested:
                self.lifecycle.launch_safely(reason="disk space freed")

    def recover(self) -> None:
        """Finish what an earlier run left (a full disk makes this wait and retry, never fail the start)."""
        try:
            for action in self.gatekeeper.recover(abandon_pending=False):
                self.progress(f"recovered: {action}")
            self.gatekeeper.genesis()
            self._adopt_pending_candidate()
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            self.disk_weather.pause(exc)
            return
        self.recovered = True

    def _adopt_pending_candidate(self) -> None:
        """Keep the newest workspace of the last run (its edits, maybe a proposal in the outbox); drop older ones."""
        main = self.gatekeeper.main()
        pending = [r for r in self.gatekeeper.store.active() if r.state == CandidateState.PENDING]
        # A kill inside create_candidate can leave a record without its worktree or .git file.
        usable = [r for r in pending if r.base == main and r.gitfile and Path(r.worktree, ".git").is_file()]
        keep = usable[-1] if usable else None
        for record in pending:
            if record is not keep:
                self.gatekeeper.abandon(record.id, "a newer workspace or a new main replaced it")
                self.progress(f"abandoned stale candidate {record.id}")
        if keep is not None:
            self.keeper.candidate = keep
            self.progress(f"resuming candidate {keep.id} and its workspace")

    def _gate_pending(self) -> None:
        if self.stop.requested or self.intake is None:
            return  # what is queued stays in the outbox for the next start
        found = self.intake.next()
        if found is None:
            return
        verdict = self._judge(found.proposal, found.recorded)
        outbox.discard(found.path)
        # Whatever else is queued was written on the workspace that was just judged and replaced
        # (the agent was stopped before the gate, so nothing of its next run is among them).
        self.intake.drop_stale()
        self._after_verdict(verdict)

    def _judge(self, proposal: Proposal, recorded: CandidateRecord | None) -> Verdict:
        self.lifecycle.stop_agent()  # the agent must not touch what is being judged, nor the worktree being removed
        self.board.set_state(_S.GATING, proposal.summary)
        if recorded is not None and recorded.state != CandidateState.PENDING:
            self.progress(f"resuming proposal {proposal.id[:8]} on candidate {recorded.id} ({recorded.state.value})")
            verdict = self.gatekeeper.resume(recorded)
        else:
            candidate = recorded or self._candidate_for_proposal(proposal)
            self.progress(f"gating proposal {proposal.id[:8]} on candidate {candidate.id}: {proposal.summary}")
            verdict = self.gatekeeper.submit(candidate, proposal)
        return verdict

    def _candidate_for_proposal(self, proposal: Proposal) -> CandidateRecord:
        """The pending workspace the proposal was written on; or, if that run's workspace is gone (a
        stop or kill between its proposal and its verdict), a fresh candidate so it still gets a verdict."""
        current = self.keeper.candidate
        if current is not None:
            try:
                record = self.gatekeeper.store.load(current.id)
            except CandidateError:
                record = None
            if record is not None and record.state == CandidateState.PENDING:
                return record
        self.progress(f"proposal {proposal.id[:8]} has no workspace left; it is judged on a fresh candidate")
        self.keeper.candidate = self.gatekeeper.create_candidate()
        return self.keeper.candidate

    def _after_verdict(self, verdict: Verdict) -> None:
        tally, status = self.tally, self.board.status
        tally.verdicts.append(verdict)
        tally.verdict_count += 1
        status.verdicts = [
            VerdictSummary.model_validate(v.model_dump(include=set(VerdictSummary.model_fields)))
            for v in tally.verdicts
        ]
        stopping = self.stopping()
        if verdict.state == CandidateState.ACCEPTED:
            self.progress(f"accepted: main is now {(verdict.commit or '')[:12]} (generation {verdict.generation})")
            verdict_at = time.monotonic()
            if not stopping:
                self.lifecycle.relaunch(reason=f"generation {verdict.generation} accepted", after_rollback=False)
                tally.restart_latencies.append(self.lifecycle.last_start_at - verdict_at)
        else:
            why = "; ".join(verdict.reasons)[:300] or verdict.state
            self.progress(
                f"{verdict.state}: candidate {verdict.candidate} ({why}); agent stays on generation {status.generation}"
            )
            if not stopping:
                # The workspace returns to main: the agent restarts on the same generation.
                self.lifecycle.relaunch(reason=f"candidate {verdict.candidate} {verdict.state}", after_rollback=False)
        self.board.set_state(_S.RUNNING, "")
        self._maybe_maintain()

    def _maybe_maintain(self) -> None:
        self._verdicts_since_maintenance += 1
        if self._verdicts_since_maintenance % heap_trim.RELEASE_EVERY == 0:
            heap_trim.release_free_memory()
        now = time.monotonic()
        if self._verdicts_since_maintenance < MAINTAIN_EVERY and now - self._maintained_at < MAINTAIN_AFTER_S:
            return
        self._verdicts_since_maintenance, self._maintained_at = 0, now
        try:
            self.gatekeeper.maintain()
        except OuroborosError as exc:
            self.progress(f"git maintenance failed ({exc}); it is tried again later")
