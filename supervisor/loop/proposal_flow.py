"""From a proposal to a verdict, and what the verdict means for the agent (a decision the loop applies).

Nothing is gated before what an earlier run left is recovered. The event loop takes the next
proposal from the intake (which also gives it its candidate), stops the agent and says it is
gating; `judge` here runs the gate, removes the proposal file only after its verdict is on disk,
drops whatever else was queued on the judged workspace and returns the restart that follows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from supervisor.base import heap_trim
from supervisor.base.errors import OuroborosError
from supervisor.gate.gatekeeper import Gatekeeper
from supervisor.loop import outbox
from supervisor.loop.agent_process import AgentProcess
from supervisor.loop.decisions import Continue, Decision, Restart
from supervisor.loop.intake import Intake, Next
from supervisor.loop.reporting import Tally
from supervisor.store.states import CandidateState
from supervisor.store.verdicts import Verdict

MAINTAIN_EVERY = 200  # verdicts between `git pack-refs` + `git gc` (the repository turns auto-gc off)
MAINTAIN_AFTER_S = 6 * 3600.0
log = logging.getLogger(__name__)


class ProposalFlow:
    """Recovers, judges one proposal at a time, and keeps the repository maintained."""

    def __init__(
        self,
        *,
        gatekeeper: Gatekeeper,
        agent: AgentProcess,
        intake: Intake,
        tally: Tally,
        stopping: Callable[[], bool],
    ) -> None:
        self.gatekeeper = gatekeeper
        self.agent = agent
        self.intake = intake
        self.tally = tally
        self.stopping = stopping  # a stop was asked for, or the run's `stop_when` says it is done
        self.recovered = False
        self._maintained_at = time.monotonic()
        self._verdicts_since_maintenance = 0
        self._maintenance_due = False

    def recover(self) -> None:
        """Finish what an earlier run left; a full disk raises (the loop pauses and tries again)."""
        for action in self.gatekeeper.recover(abandon_pending=False):
            log.info("recovered: %s", action)
        self.gatekeeper.genesis()
        self._adopt_pending_candidate()
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
                log.info("abandoned stale candidate %s", record.id)
        if keep is not None:
            self.agent.resume_in(keep)
            log.info("resuming candidate %s and its workspace", keep.id)

    def judge(self, found: Next, generation: int | None) -> Decision:
        """Gate `found` (the agent is stopped: it must not touch what is judged, nor the worktree being
        removed); `generation` is the one the agent ran. The decision: restart the agent, or not when
        the run is stopping."""
        proposal, candidate = found.proposal, found.candidate
        if found.resume:
            log.info("resuming proposal %s on candidate %s (%s)", proposal.id[:8], candidate.id, candidate.state.value)
            verdict = self.gatekeeper.resume(candidate)
        else:
            log.info("gating proposal %s on candidate %s: %s", proposal.id[:8], candidate.id, proposal.summary)
            verdict = self.gatekeeper.submit(candidate, proposal)
        outbox.discard(found.path)
        # Whatever else is queued was written on the workspace that was just judged and replaced
        # (the agent was stopped before the gate, so nothing of its next run is among them).
        self.intake.drop_stale()
        return self._after_verdict(verdict, generation)

    def _after_verdict(self, verdict: Verdict, generation: int | None) -> Decision:
        self.tally.verdicts.append(verdict)
        self.tally.verdict_count += 1
        self._verdicts_since_maintenance += 1
        self._maintenance_due = True
        stopping = self.stopping()
        if verdict.state == CandidateState.ACCEPTED:
            log.info("accepted: main is now %s (generation %s)", (verdict.commit or "")[:12], verdict.generation)
            if stopping:
                return Continue()
            return Restart(f"generation {verdict.generation} accepted", since=time.monotonic())
        why = "; ".join(verdict.reasons)[:300] or verdict.state
        log.info(
            "%s: candidate %s (%s); agent stays on generation %s", verdict.state, verdict.candidate, why, generation
        )
        if stopping:
            return Continue()
        # The workspace returns to main: the agent restarts on the same generation.
        return Restart(f"candidate {verdict.candidate} {verdict.state}")

    def maintain(self) -> None:
        """After a verdict (once the agent runs again): free memory now and then, and `git gc` every
        MAINTAIN_EVERY verdicts or MAINTAIN_AFTER_S seconds."""
        if not self._maintenance_due:
            return
        self._maintenance_due = False
        if self._verdicts_since_maintenance % heap_trim.RELEASE_EVERY == 0:
            heap_trim.release_free_memory()
        now = time.monotonic()
        if self._verdicts_since_maintenance < MAINTAIN_EVERY and now - self._maintained_at < MAINTAIN_AFTER_S:
            return
        self._verdicts_since_maintenance, self._maintained_at = 0, now
        try:
            self.gatekeeper.maintain()
        except OuroborosError as exc:
            log.warning("git maintenance failed (%s); it is tried again later", exc)
