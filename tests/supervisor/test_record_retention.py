"""Finished candidate records beyond the newest `keep` move to an archive: files stay bounded, `show`
still finds every id, ids are never handed out twice, a decided proposal stays decided, and a kill
at any step of a prune leaves a state that reads correctly and that the next prune finishes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sandbox.fake import FakeEngine
from supervisor.loop.event_loop import Supervisor
from supervisor.store.candidates import CandidateError, CandidateRecord, CandidateStore
from supervisor.store.protocol import Proposal
from supervisor.store.record_archive import BLOCK, HIGH_WATER
from supervisor.store.states import CandidateState
from tests.supervisor.fakes import fake_instance, gatekeeper_of, proposing_agent, verdict_kinds, write_proposal

ROOT = Path(__file__).resolve().parents[2]


def record(gen: int, n: int, state: CandidateState = CandidateState.REJECTED) -> CandidateRecord:
    moment = datetime(2026, 11, 1, tzinfo=UTC)
    proposal = Proposal(
        version=1,
        kind="proposal",
        id=uuid.uuid4().hex,
        why=f"why {gen}-{n}",
        summary=f"change {gen}-{n}",
        created_at=moment,
    )
    return CandidateRecord(
        id=f"{gen}-{n}",
        gen=gen,
        n=n,
        base="a" * 40,
        worktree=f"/w/{gen}-{n}",
        state=state,
        created_at=moment,
        updated_at=moment,
        proposal=proposal,
        reasons=[f"reason {n}"],
    )


def filled(folder: Path, counts: dict[int, int]) -> tuple[CandidateStore, dict[str, CandidateRecord]]:
    store = CandidateStore(folder / "candidates")
    saved = {}
    for gen, count in counts.items():
        for n in range(1, count + 1):
            saved[f"{gen}-{n}"] = store.save(record(gen, n))
            store.index_proposal(saved[f"{gen}-{n}"].proposal.id, f"{gen}-{n}")
    return store, saved


def check_consistent(store: CandidateStore, saved: dict[str, CandidateRecord], counts: dict[int, int]) -> None:
    """Whatever a prune got to: every id reads back whole, ids are not reused, the total is right."""
    for key, original in saved.items():
        assert store.load(key) == original, key
        assert store.candidate_for(original.proposal.id) == key
    for gen, count in counts.items():
        assert store.next_n(gen) == count + 1
    shown, total = store.newest(10)
    assert total == len(saved) and [r.id for r in shown] == sorted(saved, key=_key)[-10:]


def _key(candidate_id: str) -> tuple[int, int]:
    gen, _, n = candidate_id.partition("-")
    return int(gen), int(n)


def test_old_records_are_archived_and_still_shown_listed_and_never_reused(tmp_path):
    counts = {1: 30, 2: 25}
    store, saved = filled(tmp_path, counts)
    assert store.prune(keep=20) == 35
    assert len(list(store.done.glob("*.json"))) == 20
    assert sorted(os.listdir(store.archive.folder)) == ["1-0.jsonl", "2-0.jsonl", HIGH_WATER]
    check_consistent(store, saved, counts)
    everything, total = store.newest(0)
    assert [r.id for r in everything] == sorted(saved, key=_key) and total == 55
    assert [r.id for r in store.newest(40)[0]] == sorted(saved, key=_key)[-40:]  # more than the files hold
    assert store.prune(keep=20) == 0  # nothing to do: one folder listing
    fresh = store.save(record(2, store.next_n(2)))
    assert fresh.id == "2-26" and store.load("2-26") == fresh
    with pytest.raises(CandidateError, match="no candidate 2-27"):
        store.load("2-27")


def test_a_lost_high_water_mark_is_rebuilt_from_the_archive(tmp_path):
    counts = {4: BLOCK + 30}
    store, saved = filled(tmp_path, counts)
    store.prune(keep=10)
    (store.archive.folder / HIGH_WATER).unlink()
    assert store.next_n(4) == BLOCK + 31
    (store.archive.folder / HIGH_WATER).write_text("{not json")
    assert CandidateStore(store.folder).next_n(4) == BLOCK + 31
    assert store.archive.high_water() == {4: BLOCK + 20}


def test_the_proposal_index_is_256_files_whatever_the_history_and_last_entry_wins(tmp_path):
    store = CandidateStore(tmp_path / "candidates")
    ids = [uuid.uuid4().hex for _ in range(2000)]
    for n, pid in enumerate(ids):
        store.index_proposal(pid, f"1-{n + 1}")
    assert len(os.listdir(store.proposals)) <= 256
    assert all(store.candidate_for(pid) == f"1-{n + 1}" for n, pid in enumerate(ids))
    store.index_proposal(ids[0], "dropped")
    assert store.candidate_for(ids[0]) == "dropped" and store.candidate_for(uuid.uuid4().hex) is None
    with pytest.raises(CandidateError):
        store.index_proposal("../../etc", "1-1")
    with pytest.raises(CandidateError):
        store.index_proposal(uuid.uuid4().hex, "1-1\n" + ids[1] + " 9-9")  # no line injection


def test_a_torn_index_line_is_never_read_and_is_cut_off_by_the_next_append(tmp_path):
    store = CandidateStore(tmp_path / "candidates")
    first, second = "ab" + uuid.uuid4().hex[2:], "ab" + uuid.uuid4().hex[2:]
    store.index_proposal(first, "1-1")
    bucket = store.proposals / "ab.idx"
    with open(bucket, "ab") as handle:
        handle.write(f"{second} 1-".encode())  # a kill in the middle of the append
    assert store.candidate_for(second) is None and store.candidate_for(first) == "1-1"
    store.index_proposal(second, "1-2")
    assert store.candidate_for(second) == "1-2"
    assert bucket.read_bytes().endswith(b" 1-2\n") and b" 1-\n" not in bucket.read_bytes()
    assert store.index.warnings and (store.proposals / "ab.idx.torn-1").exists()


def test_entries_older_versions_wrote_one_file_each_are_read_then_moved_into_the_buckets(tmp_path):
    store, saved = filled(tmp_path, {1: 30})
    legacy = uuid.uuid4().hex
    (store.proposals / legacy[:2]).mkdir(exist_ok=True)
    (store.proposals / legacy[:2] / legacy).write_text("1-3")
    assert store.candidate_for(legacy) == "1-3"
    store.prune(keep=5)
    assert not (store.proposals / legacy[:2]).exists()
    assert store.candidate_for(legacy) == "1-3"


def test_a_legacy_entry_never_overrides_a_newer_bucket_entry_and_a_big_backlog_moves_in_bounded_passes(
    tmp_path, monkeypatch
):
    monkeypatch.setattr("supervisor.store.candidates.MAX_PER_PASS", 7)
    counts = {1: 30}
    store, saved = filled(tmp_path, counts)
    replayed = saved["1-1"].proposal.id
    (store.proposals / replayed[:2]).mkdir(exist_ok=True)
    (store.proposals / replayed[:2] / replayed).write_text("dropped")  # older than the bucket's entry
    moved = [store.prune(keep=5) for _ in range(5)]
    assert moved == [7, 7, 7, 4, 0]
    assert store.candidate_for(replayed) == "1-1" and not (store.proposals / replayed[:2]).exists()
    check_consistent(store, saved, counts)


def test_a_torn_archive_tail_is_repaired_and_nothing_is_lost(tmp_path):
    counts = {1: 40}
    store, saved = filled(tmp_path, counts)
    store.prune(keep=20)
    block = store.archive.folder / "1-0.jsonl"
    with open(block, "ab") as handle:
        handle.write(b'{"id":"1-21","gen":1,"n":')  # a kill while the next pass appended
    check_consistent(store, saved, counts)
    for n in range(41, 61):
        saved[f"1-{n}"] = store.save(record(1, n))
        store.index_proposal(saved[f"1-{n}"].proposal.id, f"1-{n}")
    counts = {1: 60}
    assert store.prune(keep=20) == 20
    assert store.archive.warnings and (store.archive.folder / "1-0.jsonl.torn-1").exists()
    check_consistent(store, saved, counts)


# -- kills during a prune -------------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {root!r})
    from supervisor.store import candidates
    from supervisor.store import record_archive
    step = {step!r}
    def die(*args, **kwargs):
        os._exit(9)
    def after(obj, name, count=1):
        real = getattr(obj, name)
        calls = []
        def wrapped(*args, **kwargs):
            result = real(*args, **kwargs)
            calls.append(1)
            if len(calls) >= count:
                os._exit(9)
            return result
        setattr(obj, name, wrapped)
    if step == "after-high-water":
        after(record_archive.Archive, "raise_high_water")
    elif step == "after-first-block":
        after(record_archive, "locked_append")
    elif step == "mid-write":
        real_append_all = record_archive.append_all
        def torn(fd, data, fsync=True, name="?"):
            os.write(fd, data[: len(data) // 2])
            os._exit(9)
        record_archive.append_all = torn
    elif step == "after-some-deletes":
        real_unlink = candidates.Path.unlink
        count = []
        def unlink(self, missing_ok=False):
            real_unlink(self, missing_ok=missing_ok)
            count.append(1)
            if len(count) == 7:
                os._exit(9)
        candidates.Path.unlink = unlink
    store = candidates.CandidateStore(candidates.Path({folder!r}))
    store.prune(keep=10)
""")


@pytest.mark.parametrize("step", ["after-high-water", "after-first-block", "mid-write", "after-some-deletes"])
def test_a_kill_between_any_two_steps_of_a_prune_leaves_a_state_the_next_prune_finishes(tmp_path, step):
    counts = {1: BLOCK + 20, 2: 30}
    store, saved = filled(tmp_path, counts)
    child = subprocess.run(
        [sys.executable, "-c", CHILD.format(root=str(ROOT), step=step, folder=str(store.folder))], timeout=120
    )
    assert child.returncode == 9  # it really died in the middle
    check_consistent(CandidateStore(store.folder), saved, counts)  # readable as it was left
    again = CandidateStore(store.folder)
    again.prune(keep=10)
    assert len(list(again.done.glob("*.json"))) == 10
    check_consistent(again, saved, counts)
    for block in again.archive.folder.glob("*.jsonl"):
        ids = [line.split(b'"')[3] for line in block.read_bytes().splitlines()]
        assert len(ids) == len(set(ids)), f"{block.name} holds a record twice"


def test_kill_9_at_random_moments_of_a_prune_never_loses_or_reuses_an_id(tmp_path):
    seed = int(os.environ.get("PRUNE_KILL_SEED", random.randrange(1_000_000)))
    print(f"seed {seed}")
    chooser = random.Random(seed)
    counts = {1: 600}
    store, saved = filled(tmp_path, counts)
    script = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); from supervisor.store.candidates import CandidateStore, Path; "
        f"CandidateStore(Path({str(store.folder)!r})).prune(keep=10)"
    )
    killed = 0
    for _ in range(6):
        child = subprocess.Popen([sys.executable, "-c", script])
        time.sleep(chooser.uniform(0.05, 0.6))
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            killed += 1
        child.wait(60)
        check_consistent(CandidateStore(store.folder), saved, counts)
    CandidateStore(store.folder).prune(keep=10)
    assert len(list(store.done.glob("*.json"))) == 10
    check_consistent(CandidateStore(store.folder), saved, counts)


# -- a hostile agent replays a proposal id long decided -----------------------------------------


def test_a_replayed_proposal_id_stays_decided_after_its_record_is_archived(tmp_path):
    written: list[str] = []
    engine = FakeEngine(agent=proposing_agent(written))
    instance = fake_instance(tmp_path / "home", engine)
    supervisor = Supervisor(instance, engine, "fake-image", stop_when=lambda s: s.verdict_count >= 3)
    assert supervisor.run() == 0
    gk = gatekeeper_of(instance, engine)
    first = written[0]
    first_candidate = gk.store.candidate_for(first)
    kinds = verdict_kinds(gk)
    moved = gk.store.prune(keep=1)
    assert moved >= 2 and not (gk.store.done / f"{first_candidate}.json").exists()
    assert gk.store.load(first_candidate).proposal.id == first  # `show` still finds it

    outbox = instance.run_dir / "outbox"
    replay = write_proposal(outbox)  # the same file again, under the old id
    (outbox / f"{replay}.json").rename(outbox / f"{first}.json")
    text = (outbox / f"{first}.json").read_text().replace(replay, first)
    (outbox / f"{first}.json").write_text(text)
    engine.agent = proposing_agent([], times=0)
    again = Supervisor(instance, engine, "fake-image", stop_when=lambda s: s.agent is not None)
    assert again.run() == 0
    from supervisor.loop.intake import Intake

    intake = Intake(gatekeeper=gk, folder=outbox, refused=lambda k, m: None, workspace=lambda: None)
    assert intake.next() is None  # decided: the file is simply removed
    assert not (outbox / f"{first}.json").exists()
    assert verdict_kinds(gk) == kinds and gk.store.candidate_for(first) == first_candidate


def test_the_retention_pass_after_a_rejection_archives_beyond_keep_records(tmp_path):
    from supervisor.base.git_ops import Git
    from supervisor.gate.config import RetentionPolicy
    from supervisor.gate.retention import enforce
    from tests.gate.repo_factory import make_repo

    repo = make_repo(tmp_path / "repo")
    state = repo / "ouroboros"
    counts = {0: 40}
    store, saved = filled(state, counts)
    result = enforce(Git(repo), lambda: RetentionPolicy(keep_records=12), state)
    assert result.archived == 28 and not result.error
    assert len(list(store.done.glob("*.json"))) == 12
    check_consistent(CandidateStore(state / "candidates"), saved, counts)
    broken = enforce(Git(repo), lambda: RetentionPolicy.model_validate({"keep_records": 0}), state)
    assert broken.archived == 0 and "keep_records" in broken.error  # a bad policy never raises out


def test_periodic_maintenance_archives_accepted_records_too(tmp_path):
    """An agent whose proposals are all accepted never triggers the pass a rejection runs: the
    gatekeeper's maintenance archives too."""
    from supervisor.gate.config import GateConfig, RetentionPolicy

    engine = FakeEngine()
    instance = fake_instance(tmp_path / "home", engine)
    gk = gatekeeper_of(instance, engine)
    counts = {1: 30}
    store, saved = filled(gk.state_dir, {})
    for n in range(1, 31):
        saved[f"1-{n}"] = store.save(record(1, n, CandidateState.ACCEPTED))
        store.index_proposal(saved[f"1-{n}"].proposal.id, f"1-{n}")
    gk._config = GateConfig(retention=RetentionPolicy(keep_records=10))
    gk.maintain()
    assert len(list(store.done.glob("*.json"))) == 10
    check_consistent(CandidateStore(gk.state_dir / "candidates"), saved, counts)
