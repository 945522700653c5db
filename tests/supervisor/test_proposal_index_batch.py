"""The agent chooses how many proposal files a verdict drops: indexing them costs one fsync per
bucket touched, never one per id, and every id reads back as dropped (real files, real fsyncs)."""

from __future__ import annotations

import os
import uuid

import pytest

from supervisor.store.candidates import CandidateError, CandidateStore
from supervisor.store.record_archive import DROPPED


def test_many_dropped_ids_cost_one_fsync_per_bucket_and_all_read_back(tmp_path, monkeypatch):
    store = CandidateStore(tmp_path / "candidates")
    store.index_proposal("ab" + "0" * 30, "3-1")
    ids = [uuid.uuid4().hex for _ in range(3000)]
    real_fsync, calls = os.fsync, []

    def counted(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counted)
    store.index_proposals(ids, DROPPED)
    buckets = {proposal_id[:2] for proposal_id in ids}
    assert len(calls) == len(buckets) <= 256
    assert all(store.candidate_for(proposal_id) == DROPPED for proposal_id in ids)
    assert store.candidate_for("ab" + "0" * 30) == "3-1"  # an earlier entry of a shared bucket stays


def test_one_bad_id_indexes_none_of_the_batch(tmp_path):
    store = CandidateStore(tmp_path / "candidates")
    good = uuid.uuid4().hex
    with pytest.raises(CandidateError):
        store.index_proposals([good, "../../etc/passwd"], DROPPED)
    assert store.candidate_for(good) is None


def test_a_proposal_whose_indexed_record_cannot_be_read_stays_decided(tmp_path):
    """Gating it again could accept the same proposal twice: an unreadable record counts as decided."""
    from sandbox.fake import FakeEngine
    from supervisor.loop.intake import DROPPED, Intake
    from supervisor.store.protocol import Proposal
    from tests.supervisor.fakes import fake_instance, gatekeeper_of, write_proposal

    engine = FakeEngine()
    instance = fake_instance(tmp_path / "home", engine)
    gk = gatekeeper_of(instance, engine)
    folder = tmp_path / "outbox"
    folder.mkdir()
    proposal_id = write_proposal(folder)
    gk.store.index_proposal(proposal_id, "1-1")
    gk.store.path("1-1").parent.mkdir(parents=True, exist_ok=True)
    gk.store.path("1-1").write_bytes(b"{not a record")
    intake = Intake(gatekeeper=gk, folder=folder, refused=lambda _kind, _text: None, workspace=lambda: None)
    proposal = Proposal.model_validate_json((folder / f"{proposal_id}.json").read_bytes())
    assert intake.recorded(proposal) == DROPPED
    assert intake.next() is None and list(folder.iterdir()) == []
