"""Reading the outbox exactly once per proposal, across kills: what to judge, what is already decided.

A proposal file leaves the outbox only after its fate is on disk: a candidate record (found through
the proposal index, one file per id, never a scan of history) or a `proposal-dropped` decision. So a
kill anywhere leaves files whose fate is either recorded (the file just goes) or not (it is judged).
Each proposal to judge comes with its candidate: the one a kill interrupted, the agent's workspace it
was written on, or, if that workspace is gone, a fresh candidate made here, so it still gets a verdict.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from supervisor.gate.gatekeeper import Gatekeeper
from supervisor.loop import outbox
from supervisor.store.candidates import CandidateError, CandidateRecord
from supervisor.store.decision_kinds import DecisionKind
from supervisor.store.protocol import Proposal, ProtocolError, TaskResult
from supervisor.store.states import FINAL, CandidateState

DROPPED = "dropped"  # what the proposal index says of a proposal dropped unjudged
DROP_IDS_PER_RECORD = 200
UNGATED = 'this instance does not gate proposals ([agent] proposals = "drop"), so its generation stays fixed'
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Next:
    """The next proposal to judge and its candidate; `resume`: a kill interrupted its judging."""

    path: Path
    proposal: Proposal
    candidate: CandidateRecord
    resume: bool


class Intake:
    def __init__(
        self,
        *,
        gatekeeper: Gatekeeper,
        folder: Path,
        refused: Callable[[DecisionKind, str], None],
        workspace: Callable[[], CandidateRecord | None],
        gate: bool = True,
    ) -> None:
        """`gate` False (`[agent] proposals = "drop"`): a new proposal is dropped unjudged, recorded."""
        self.gatekeeper = gatekeeper
        self.gate = gate
        self.folder = folder
        self.refused = refused  # (kind, message): logged and journaled, throttled by the caller
        self.workspace = workspace  # the agent's current workspace, if it has one
        self.recently_dropped = self._dropped_in_log()

    def next(self) -> Next | None:
        """The oldest proposal not decided yet; refused and already-decided files are removed on the way."""
        for path in outbox.pending(self.folder):
            try:
                proposal = outbox.read_message(path)
            except (ProtocolError, ValueError, OSError) as exc:
                self.refused(DecisionKind.PROPOSAL_REFUSED, f"Your proposal file {path.name} was refused: {exc}")
                outbox.discard(path)
                continue
            if isinstance(proposal, TaskResult):
                continue  # the task flow's (supervisor/loop/task_flow.py)
            recorded = self.recorded(proposal)
            if recorded == DROPPED or (isinstance(recorded, CandidateRecord) and recorded.state in FINAL):
                outbox.discard(path)  # decided before a crash; only the file was left
                continue
            if isinstance(recorded, CandidateRecord):
                return Next(path, proposal, recorded, resume=recorded.state != CandidateState.PENDING)
            if not self.gate:
                self._drop_ungated(path, proposal)
                continue
            return Next(path, proposal, self._candidate_for(proposal), resume=False)
        return None

    def _candidate_for(self, proposal: Proposal) -> CandidateRecord:
        """The pending workspace the proposal was written on; or, if that run's workspace is gone (a
        stop or kill between its proposal and its verdict), a fresh candidate so it still gets a verdict."""
        current = self.workspace()
        if current is not None:
            try:
                record = self.gatekeeper.store.load(current.id)
            except CandidateError:
                record = None
            if record is not None and record.state == CandidateState.PENDING:
                return record
        log.info("proposal %s has no workspace left; it is judged on a fresh candidate", proposal.id[:8])
        return self.gatekeeper.create_candidate()

    def recorded(self, proposal: Proposal) -> CandidateRecord | str | None:
        """What is already known of a proposal: DROPPED, its candidate record, or None (new to us)."""
        store = self.gatekeeper.store
        found = store.candidate_for(proposal.id)
        if found == DROPPED or (found is None and proposal.id in self.recently_dropped):
            return DROPPED
        if found is None:
            return None
        try:
            record = store.load(found)
        except CandidateError as exc:
            # Indexed with a record we cannot read: it may have been decided, and a decided proposal
            # must stay decided (gating it again could accept it twice). The agent can propose anew.
            log.warning("proposal %s: %s; treated as decided, its file is dropped", proposal.id[:8], exc)
            return DROPPED
        if record.proposal is None or record.proposal.id != proposal.id:
            return None  # indexed, then killed before the candidate took it: not decided yet
        return record

    def _drop_ungated(self, path: Path, proposal: Proposal) -> None:
        """This instance does not gate (`[agent] proposals = "drop"`): logged, indexed, then removed,
        the same order as `drop_stale`, so a kill in between neither loses nor repeats the record."""
        self.gatekeeper.log.append(
            DecisionKind.PROPOSAL_DROPPED, details={"proposals": [proposal.id], "reason": UNGATED}
        )
        self.recently_dropped = {proposal.id}
        self.gatekeeper.store.index_proposals([proposal.id], DROPPED)
        outbox.discard(path)
        log.info("proposal %s dropped unjudged: %s", proposal.id[:8], UNGATED)
        self.refused(
            DecisionKind.PROPOSAL_DROPPED,
            f"Your proposal {proposal.id[:8]} was dropped unjudged: {UNGATED}. Your source stays as it is.",
        )

    def drop_stale(self) -> None:
        """Proposals still queued were written on the workspace just judged: dropped, each recorded once
        (logged, then indexed, then removed, so a kill in between neither loses nor repeats a record)."""
        stale_files = outbox.pending(self.folder)
        ids: list[str] = []
        for stale in list(stale_files):
            try:
                proposal = outbox.read_message(stale)
            except (ProtocolError, ValueError, OSError):
                continue  # not a proposal: nothing to record, it just goes
            if isinstance(proposal, TaskResult):
                stale_files.remove(stale)  # a task's "done" is not a proposal of that workspace: it stays
                continue
            if self.recorded(proposal) is None:
                ids.append(proposal.id)
        for start in range(0, len(ids), DROP_IDS_PER_RECORD):
            batch = ids[start : start + DROP_IDS_PER_RECORD]
            self.gatekeeper.log.append(DecisionKind.PROPOSAL_DROPPED, details={"proposals": batch})
            # Each batch indexed before the next is logged: a kill leaves at most the newest record
            # unindexed, and that one is exactly what `_dropped_in_log` reads back.
            self.gatekeeper.store.index_proposals(batch, DROPPED)  # one fsync per bucket, not per id
        for stale in stale_files:
            outbox.discard(stale)
        if ids:
            self.refused(
                DecisionKind.PROPOSAL_DROPPED,
                f"{len(ids)} proposal file(s) arrived while an earlier proposal of "
                "the same workspace was being gated; that workspace is gone, so they "
                "were dropped. Propose again from your new workspace.",
            )

    def _dropped_in_log(self) -> set[str]:
        """Proposal ids the log's recent tail dropped (a kill may have come before they were indexed)."""
        record = self.gatekeeper.log.find_recent(DecisionKind.PROPOSAL_DROPPED)
        return {str(item) for item in record.details.get("proposals", [])} if record is not None else set()
