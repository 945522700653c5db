"""`supervisor candidates` reads only the records it shows: the newest by id, however many there are."""

from __future__ import annotations

from datetime import UTC, datetime

from supervisor.store.candidates import CandidateRecord, CandidateStore
from supervisor.store.states import CandidateState


def record(gen: int, n: int, state: CandidateState = CandidateState.REJECTED) -> CandidateRecord:
    moment = datetime(2026, 11, 1, tzinfo=UTC)
    return CandidateRecord(
        id=f"{gen}-{n}",
        gen=gen,
        n=n,
        base="a" * 40,
        worktree=f"/w/{gen}-{n}",
        state=state,
        created_at=moment,
        updated_at=moment,
    )


def test_the_newest_are_chosen_by_number_and_only_they_are_read(tmp_path, monkeypatch):
    store = CandidateStore(tmp_path / "candidates")
    for gen, count in ((1, 12), (2, 10)):
        for n in range(1, count + 1):
            store.save(record(gen, n))
    store.save(record(3, 1, CandidateState.PENDING))  # live: in the top folder
    (store.done / "2-11.json.tmp123").write_text("half-written")  # strays are not records
    (store.done / "notes.txt").write_text("?")
    read: list[str] = []
    original = CandidateStore._read

    def counting(self, path, **kwargs):
        read.append(path.name)
        return original(self, path, **kwargs)

    monkeypatch.setattr(CandidateStore, "_read", counting)
    shown, total = store.newest(4)
    assert [r.id for r in shown] == ["2-8", "2-9", "2-10", "3-1"]  # numeric, not text order (2-10 > 2-9)
    assert total == 23 and len(read) == 4
    everything, total = store.newest(0)
    assert len(everything) == total == 23 and everything[0].id == "1-1"


def test_a_corrupt_record_is_skipped_and_named(tmp_path):
    store = CandidateStore(tmp_path / "candidates")
    store.save(record(1, 1))
    (store.done / "1-2.json").write_text("{torn")
    shown, total = store.newest(10)
    assert [r.id for r in shown] == ["1-1"] and total == 2
    assert store.corrupt == [store.done / "1-2.json"]
