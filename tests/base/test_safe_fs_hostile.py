"""supervisor/base/safe_fs.py under a hostile review: what costs the supervisor memory the agent chose."""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from supervisor.base.safe_fs import Bound, Folder, Refusal, UnsafeFileError, read_fd, read_file


def peak_bytes(call: Callable[[], object]) -> int:
    """The most Python memory `call` held at once (its exception, if any, is swallowed)."""
    tracemalloc.start()
    try:
        call()
    except OSError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def many_names(folder: Path, count: int) -> None:
    for number in range(count):
        os.close(os.open(folder / f"n{number:06d}", os.O_CREAT | os.O_WRONLY, 0o644))


def test_a_sparse_terabyte_is_refused_before_a_byte_is_read(tmp_path: Path) -> None:
    """Refusing a file larger than the limit must not first read (and hold) limit bytes of zeros."""
    sparse = tmp_path / "sparse"
    with open(sparse, "wb") as handle:
        handle.truncate(1 << 40)
    with pytest.raises(UnsafeFileError) as caught:
        read_file(sparse, 64 << 20)
    assert caught.value.refusal is Refusal.TOO_LARGE
    assert peak_bytes(lambda: read_file(sparse, 64 << 20)) < 1 << 20


def test_a_file_that_grows_past_the_limit_while_read_is_still_refused(tmp_path: Path) -> None:
    path = tmp_path / "growing"
    path.write_bytes(b"x" * 10)
    fd = os.open(path, os.O_RDONLY)
    try:
        with open(path, "ab") as writer:  # grows after the descriptor was opened, before it is read
            writer.write(b"y" * 100)
        with pytest.raises(UnsafeFileError) as caught:
            read_fd(fd, 50, Bound.REFUSE, "growing")
        assert caught.value.refusal is Refusal.TOO_LARGE
    finally:
        os.close(fd)


def test_entries_stop_at_their_limit(tmp_path: Path) -> None:
    many_names(tmp_path, 50)
    with Folder.open(tmp_path) as folder:
        assert len(folder.entries(limit=50)) == 50
        with pytest.raises(UnsafeFileError) as caught:
            folder.entries(limit=49)
        assert caught.value.refusal is Refusal.TOO_LARGE
        assert "more than 49 names" in str(caught.value)


def test_a_bounded_listing_of_a_huge_folder_costs_no_memory(tmp_path: Path) -> None:
    """20,000 names listed whole would hold ~1.5 MB; a listing bounded at 100 stops after 101 names."""
    many_names(tmp_path, 20_000)
    with Folder.open(tmp_path) as folder:
        assert peak_bytes(lambda: folder.entries(limit=100)) < 200_000


def test_the_judges_capped_listing_never_holds_the_whole_folder(tmp_path: Path, monkeypatch) -> None:
    from supervisor.gate.acceptance import readback

    monkeypatch.setattr(readback, "MAX_ENTRIES", 10)
    (tmp_path / "out").mkdir()
    many_names(tmp_path / "out", 20_000)
    tree = readback.SafeTree(tmp_path)
    assert tree.listdir("out") == [f"n{number:06d}" for number in range(10)]  # the same sorted first ten
    assert peak_bytes(lambda: tree.listdir("out")) < 200_000


def test_the_consoles_newest_day_never_holds_the_whole_folder(tmp_path: Path) -> None:
    from supervisor.console import agent_files

    many_names(tmp_path, 20_000)
    for day in ("2026/12/06", "2026/12/07", "2025/01/01"):
        (tmp_path / day).mkdir(parents=True)
    (tmp_path / "2026/12/07/notes.md").write_text("latest")
    found = agent_files.latest_day(tmp_path)
    assert found is not None and found[0] == "2026-12-07" and found[1]["notes.md"] == "latest"
    assert peak_bytes(lambda: agent_files.latest_day(tmp_path)) < 200_000
