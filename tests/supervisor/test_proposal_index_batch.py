"""The agent chooses how many proposal files a verdict drops: indexing them costs one fsync per
bucket touched, never one per id, and every id reads back as dropped (real files, real fsyncs)."""

from __future__ import annotations

import os
import uuid

import pytest

from supervisor.candidates import CandidateError, CandidateStore
from supervisor.record_archive import DROPPED


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
