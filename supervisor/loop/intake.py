"""Reading the outbox exactly once per proposal, across kills: what to judge, what is already decided.

A proposal file leaves the outbox only after its fate is on disk: a candidate record (found through
the proposal index, one file per id, never a scan of history) or a `proposal-dropped` decision. So a
kill anywhere leaves files whose fate is either recorded (the file just goes) or not (it is judged).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from supervisor.gate.gatekeeper import Gatekeeper
from supervisor.loop import outbox
from supervisor.store.candidates import CandidateError, CandidateRecord
from supervisor.store.protocol import Proposal, ProtocolError
from supervisor.store.states import FINAL

DROPPED = "dropped"  # what the proposal index says of a proposal dropped unjudged
DROP_IDS_PER_RECORD = 200


@dataclass
class Next:
    """The next proposal to judge; `recorded` is its candidate if a kill interrupted its judging."""

    path: Path
    proposal: Proposal
    recorded: CandidateRecord | None


class Intake:
    def __init__(
        self, gatekeeper: Gatekeeper, folder: Path, progress: Callable[[str], None], refused: Callable[[str, str], None]
    ) -> None:
        self.gatekeeper = gatekeeper
        self.folder = folder
        self.progress = progress
        self.refused = refused  # (kind, message): logged and journaled, throttled by the caller
        self.recently_dropped = self._dropped_in_log()

    def next(self) -> Next | None:
        """The oldest proposal not decided yet; refused and already-decided files are removed on the way."""
        for path in outbox.pending(self.folder):
            try:
                proposal = outbox.read(path)
            except (ProtocolError, ValueError, OSError) as exc:
                self.refused("proposal-refused", f"Your proposal file {path.name} was refused: {exc}")
                outbox.discard(path)
                continue
            recorded = self.recorded(proposal)
            if recorded == DROPPED or (isinstance(recorded, CandidateRecord) and recorded.state in FINAL):
                outbox.discard(path)  # decided before a crash; only the file was left
                continue
            return Next(path, proposal, recorded if isinstance(recorded, CandidateRecord) else None)
        return None

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
            self.progress(f"proposal {proposal.id[:8]}: {exc}; treated as decided, its file is dropped")
            return DROPPED
        if record.proposal is None or record.proposal.id != proposal.id:
            return None  # indexed, then killed before the candidate took it: not decided yet
        return record

    def drop_stale(self) -> None:
        """Proposals still queued were written on the workspace just judged: dropped, each recorded once
        (logged, then indexed, then removed, so a kill in between neither loses nor repeats a record)."""
        stale_files = outbox.pending(self.folder)
        ids: list[str] = []
        for stale in stale_files:
            try:
                proposal = outbox.read(stale)
            except (ProtocolError, ValueError, OSError):
                continue  # not a proposal: nothing to record, it just goes
            if self.recorded(proposal) is None:
                ids.append(proposal.id)
        for start in range(0, len(ids), DROP_IDS_PER_RECORD):
            batch = ids[start : start + DROP_IDS_PER_RECORD]
            self.gatekeeper.log.append("proposal-dropped", details={"proposals": batch})
            # Each batch indexed before the next is logged: a kill leaves at most the newest record
            # unindexed, and that one is exactly what `_dropped_in_log` reads back.
            self.gatekeeper.store.index_proposals(batch, DROPPED)  # one fsync per bucket, not per id
        for stale in stale_files:
            outbox.discard(stale)
        if ids:
            self.refused(
                "proposal-dropped",
                f"{len(ids)} proposal file(s) arrived while an earlier proposal of "
                "the same workspace was being gated; that workspace is gone, so they "
                "were dropped. Propose again from your new workspace.",
            )

    def _dropped_in_log(self) -> set[str]:
        """Proposal ids the log's recent tail dropped (a kill may have come before they were indexed)."""
        record = self.gatekeeper.log.find_recent("proposal-dropped")
        return {str(item) for item in record.details.get("proposals", [])} if record is not None else set()
