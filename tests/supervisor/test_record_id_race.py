"""An operator's `supervisor reject` runs a prune in its own process while the supervisor picks the
next candidate id: a prune landing between reading the high-water mark and looking for an id's file
must not make an archived id look free (it would be handed out again, and the old proposal of that
id would no longer read as decided). Real files; the prune is run at that exact instruction."""

from __future__ import annotations

from pathlib import Path

from supervisor.store.candidates import CandidateStore
from supervisor.store.record_archive import Archive
from tests.supervisor.test_record_retention import filled

KEEP = 10
COUNT = 20  # beyond keep + a tenth: the prune archives 1-1 .. 1-10


def prune_after_the_first_look(store: CandidateStore, folder: Path, monkeypatch) -> list[int]:
    """The first look `store` takes (at the high-water mark or at a record file) returns what it saw,
    then another process's prune runs to its end: the worst moment, whichever look comes first."""
    other = CandidateStore(folder / "candidates")
    moved: list[int] = []
    started: list[bool] = []

    def then_prune(result):
        if not started:
            started.append(True)  # the prune's own looks do not start another
            moved.append(other.prune(keep=KEEP))
        return result

    real_mark, real_exists = Archive.high_water, Path.exists
    store.archive.high_water = lambda: then_prune(real_mark(store.archive))  # type: ignore[method-assign]

    def looked(path: Path, *args, **kwargs) -> bool:
        seen = real_exists(path, *args, **kwargs)
        return then_prune(seen) if str(path).startswith(str(store.folder)) else seen

    monkeypatch.setattr(Path, "exists", looked)
    return moved


def test_an_id_archived_while_exists_looks_is_still_taken(tmp_path, monkeypatch):
    store, saved = filled(tmp_path, {1: COUNT})
    moved = prune_after_the_first_look(store, tmp_path, monkeypatch)
    assert store.exists("1-1")  # the oldest: the one the prune archives first
    assert moved == [KEEP]
    assert all(store.exists(key) for key in saved)
    assert store.load("1-1") == saved["1-1"]


def test_next_n_never_hands_out_an_id_archived_while_it_searches(tmp_path, monkeypatch):
    store, saved = filled(tmp_path, {1: COUNT})
    moved = prune_after_the_first_look(store, tmp_path, monkeypatch)
    assert store.next_n(1) == COUNT + 1
    assert moved == [KEEP]
    for key, original in saved.items():
        assert store.candidate_for(original.proposal.id) == key and store.load(key) == original


def test_a_full_listing_during_a_prune_shows_every_record_and_calls_none_corrupt(tmp_path, monkeypatch):
    store, saved = filled(tmp_path, {1: COUNT})
    other = CandidateStore(tmp_path / "candidates")
    real_ids = CandidateStore._file_ids
    moved: list[int] = []

    def listed_then_pruned(self: CandidateStore) -> dict[str, Path]:
        names = real_ids(self)
        moved.append(other.prune(keep=KEEP))  # the worst moment: the files are listed, not yet read
        return names

    monkeypatch.setattr(CandidateStore, "_file_ids", listed_then_pruned)
    shown, total = store.newest(0)
    assert moved == [KEEP]
    assert [record.id for record in shown] == sorted(saved, key=lambda key: int(key.split("-")[1]))
    assert total == COUNT and store.corrupt == []
