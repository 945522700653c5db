"""supervisor/base/safe_fs.py against what a hostile agent can leave on disk: real links, FIFOs, devices, races."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from supervisor.base import safe_fs
from supervisor.base.safe_fs import Access, Bound, Folder, Kind, Refusal, UnsafeFileError, plain_parts, read_file


def tree(tmp_path: Path) -> tuple[Path, Path]:
    """(root the agent writes, a host secret outside it)."""
    secret = tmp_path / "host" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("host secret")
    root = tmp_path / "agent"
    root.mkdir()
    return root, secret


def refusal(call: Callable[[], object]) -> Refusal:
    with pytest.raises(UnsafeFileError) as caught:
        call()
    return caught.value.refusal


def within(seconds: float, call: Callable[[], object]) -> object:
    """Run `call` in a thread; fail (instead of hanging the suite) if it blocks."""
    result: list[object] = []

    def run() -> None:
        try:
            result.append(call())
        except BaseException as exc:  # handed back to the test
            result.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=seconds)
    assert not worker.is_alive(), "blocked"
    return result[0]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# -- links ---------------------------------------------------------------------------------------


def test_a_symlink_to_a_host_file_is_never_read_nor_written_through(tmp_path):
    root, secret = tree(tmp_path)
    os.symlink(secret, root / "notes.md")
    with Folder.open(root) as folder:
        assert refusal(lambda: folder.read("notes.md", 100)) is Refusal.LINK
        for access in Access:
            assert refusal(lambda a=access: folder.open_file("notes.md", a, create=0o644)) is Refusal.LINK
        assert folder.kind("notes.md") is Kind.LINK
        assert folder.readlink("notes.md") == str(secret)  # the link's text, never its target
    assert refusal(lambda: read_file(root / "notes.md", 100)) is Refusal.LINK
    assert secret.read_text() == "host secret"


def test_a_dangling_link_is_not_created_through_by_an_append(tmp_path):
    root, _ = tree(tmp_path)
    target = tmp_path / "host" / "planted"
    os.symlink(target, root / "notes.md")
    with Folder.open(root) as folder:
        assert refusal(lambda: folder.open_file("notes.md", Access.APPEND, create=0o644)) is Refusal.LINK
    assert not target.exists()


def test_a_chain_of_links_that_each_look_in_tree_but_climb_out_is_refused(tmp_path):
    root, secret = tree(tmp_path)
    # up -> ..   hop -> up/agent/up   x -> hop/host : every text names something "inside"
    os.symlink("..", root / "up")
    os.symlink("up/agent/up", root / "hop")
    os.symlink("hop/host", root / "x")
    assert (root / "x" / "secret.txt").read_text() == "host secret"  # the kernel would follow it out
    with Folder.open(root) as folder:
        for parts in (["x"], ["hop", "host"], ["up", "host"]):
            assert refusal(lambda p=parts: folder.descend(p)) is Refusal.LINK
        assert {e.name: e.kind for e in folder.entries()} == {"up": Kind.LINK, "hop": Kind.LINK, "x": Kind.LINK}
        assert refusal(lambda: folder.read("x/secret.txt", 100)) is Refusal.NOT_RELATIVE


def test_a_symlinked_parent_folder_is_not_walked_through_nor_created_in(tmp_path):
    root, secret = tree(tmp_path)
    os.symlink(secret.parent, root / "2025")
    with Folder.open(root) as folder:
        with pytest.raises(UnsafeFileError) as caught:
            folder.descend(["2025", "01"], create=0o755)
        assert caught.value.refusal is Refusal.LINK and caught.value.where.endswith("/2025")
        assert refusal(lambda: folder.folder("2025")) is Refusal.LINK
    assert os.listdir(secret.parent) == ["secret.txt"], "nothing was made in the host folder"
    assert refusal(lambda: Folder.open(root / "2025")) is Refusal.LINK
    with Folder.open(root / "2025", follow=True) as trusted:  # only a trusted root may be a link
        assert trusted.read("secret.txt", 100).data == b"host secret"


def test_a_path_that_is_not_plain_and_relative_is_refused():
    for bad in ("../x", "a/../../x", "/etc/passwd"):
        assert refusal(lambda b=bad: plain_parts(b)) is Refusal.NOT_RELATIVE
    assert plain_parts("a/./b") == ["a", "b"] and plain_parts(".") == []


# -- FIFOs, devices, folders -----------------------------------------------------------------------


def test_a_fifo_is_refused_without_blocking_for_every_access(tmp_path):
    root, _ = tree(tmp_path)
    os.mkfifo(root / "usage.jsonl")
    with Folder.open(root) as folder:
        for access in Access:
            outcome = within(5, lambda a=access: folder.open_file("usage.jsonl", a))
            assert isinstance(outcome, UnsafeFileError) and outcome.refusal is Refusal.NOT_REGULAR, access
        outcome = within(5, lambda: folder.read("usage.jsonl", 100, Bound.TAIL))
        assert isinstance(outcome, UnsafeFileError) and outcome.refusal is Refusal.NOT_REGULAR
        assert folder.kind("usage.jsonl") is Kind.OTHER
    outcome = within(5, lambda: read_file(root / "usage.jsonl", 100))
    assert isinstance(outcome, UnsafeFileError) and outcome.refusal is Refusal.NOT_REGULAR


def test_character_devices_are_refused_before_a_byte_is_read(tmp_path):
    with Folder.open("/dev", follow=True) as dev:
        for name in ("null", "zero"):  # /dev/zero would fill any buffer it is asked to
            assert refusal(lambda n=name: dev.read(n, 10, Bound.CUT)) is Refusal.NOT_REGULAR
            assert dev.kind(name) is Kind.OTHER
    assert refusal(lambda: read_file("/dev/null", 10)) is Refusal.NOT_REGULAR
    assert refusal(lambda: safe_fs.open_regular("/dev/null", Access.APPEND)) is Refusal.NOT_REGULAR


def test_a_folder_where_a_file_is_expected_is_refused(tmp_path):
    root, _ = tree(tmp_path)
    (root / "notes.md").mkdir()
    with Folder.open(root) as folder:
        for access in Access:
            assert refusal(lambda a=access: folder.open_file("notes.md", a)) is Refusal.NOT_REGULAR
        assert refusal(lambda: folder.read("notes.md", 100)) is Refusal.NOT_REGULAR
    (root / "file").write_text("x")
    with Folder.open(root) as folder:
        assert refusal(lambda: folder.folder("file")) is Refusal.NOT_FOLDER
    assert refusal(lambda: Folder.open(root / "file")) is Refusal.NOT_FOLDER


# -- bounds ---------------------------------------------------------------------------------------


def counting_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    asked: list[int] = []
    real = os.read

    def read(fd: int, count: int) -> bytes:
        asked.append(count)
        return real(fd, count)

    monkeypatch.setattr(safe_fs.os, "read", read)
    return asked


def test_a_huge_sparse_file_is_refused_or_cut_without_reading_past_the_bound(tmp_path, monkeypatch):
    root, _ = tree(tmp_path)
    with open(root / "big", "wb") as handle:
        handle.truncate(1 << 40)  # a sparse terabyte
        handle.seek((1 << 40) - 4)
        handle.write(b"tail")
    asked = counting_reads(monkeypatch)
    with Folder.open(root) as folder:
        with pytest.raises(UnsafeFileError, match="larger than 1000 bytes") as caught:
            folder.read("big", 1000)
        assert caught.value.refusal is Refusal.TOO_LARGE
        assert sum(asked) <= 1001
        asked.clear()
        cut = folder.read("big", 1000, Bound.CUT)
        assert cut.data == b"\0" * 1000 and cut.size == 1 << 40 and not cut.grew
        assert sum(asked) <= 1000
        asked.clear()
        assert folder.read("big", 6, Bound.TAIL).data == b"\0\0tail"
        assert sum(asked) <= 6


def test_a_file_that_fits_is_read_whole_with_its_mode(tmp_path):
    root, _ = tree(tmp_path)
    (root / "run.sh").write_bytes(b"x" * 1000)
    (root / "run.sh").chmod(0o755)
    with Folder.open(root) as folder:
        content = folder.read("run.sh", 1000)
    assert content.data == b"x" * 1000 and content.mode & 0o100 and not content.grew


def test_a_file_growing_while_read_is_seen_to_grow(tmp_path, monkeypatch):
    root, _ = tree(tmp_path)
    path = root / "entries.jsonl"
    path.write_bytes(b"a" * 100)
    real = os.read

    def grow_first(fd: int, count: int) -> bytes:  # the agent appends between the size and the read
        with open(path, "ab") as handle:
            handle.write(b"b" * 50)
        return real(fd, count)

    monkeypatch.setattr(safe_fs.os, "read", grow_first)
    with Folder.open(root) as folder:
        grown = folder.read("entries.jsonl", 1000)
        assert grown.grew and len(grown.data) == 101, "one byte past the size shows it, no more is read"
        # 150 bytes when opened, within a limit of 150, but more by the time it is read: too large
        assert refusal(lambda: folder.read("entries.jsonl", 150)) is Refusal.TOO_LARGE
        assert len(folder.read("entries.jsonl", 10, Bound.CUT).data) == 10


def test_a_file_a_thread_keeps_writing_is_read_within_bounds(tmp_path):
    root, _ = tree(tmp_path)
    path = root / "entries.jsonl"
    path.write_bytes(b"")
    stop = threading.Event()

    def writer() -> None:
        with open(path, "ab", buffering=0) as handle:
            while not stop.is_set():
                handle.write(b"x" * 512)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    seen_growth = False
    try:
        with Folder.open(root) as folder:
            for _ in range(2000):
                try:
                    content = folder.read("entries.jsonl", 1 << 20)
                except UnsafeFileError as exc:
                    assert exc.refusal is Refusal.TOO_LARGE
                    break
                assert len(content.data) <= content.size + 1
                seen_growth |= content.grew
                if seen_growth:
                    break
    finally:
        stop.set()
        thread.join(timeout=5)
    assert seen_growth or path.stat().st_size > 1 << 20


# -- vanishing and replaced files --------------------------------------------------------------------


def test_a_file_removed_or_replaced_after_it_was_opened_reads_as_opened(tmp_path, monkeypatch):
    root, _ = tree(tmp_path)
    path = root / "goals.md"
    real = os.read
    for swap in ("unlink", "replace"):
        path.write_bytes(b"original")
        done: list[bool] = []

        def hostile(fd: int, count: int, how: str = swap, done: list[bool] = done) -> bytes:
            if not done:
                done.append(True)
                if how == "unlink":
                    path.unlink()
                else:
                    (root / "new").write_bytes(b"swapped in, much longer than before")
                    os.replace(root / "new", path)
            return real(fd, count)

        monkeypatch.setattr(safe_fs.os, "read", hostile)
        with Folder.open(root) as folder:
            content = folder.read("goals.md", 1000)
        assert content.data == b"original" and not content.grew, swap


def test_what_vanishes_mid_walk_gives_a_clear_result(tmp_path, monkeypatch):
    root, _ = tree(tmp_path)
    for name in ("a", "b"):
        (root / name).write_text(name)
    (root / "day").mkdir()
    real = os.listdir

    def listing_then_removed(fd: Any) -> list[str]:
        names = real(fd)
        if (root / "a").exists():
            (root / "a").unlink()  # gone between the listing and the look
        return names

    monkeypatch.setattr(safe_fs.os, "listdir", listing_then_removed)
    with Folder.open(root) as folder:
        assert [(e.name, e.kind) for e in folder.entries()] == [
            ("a", Kind.MISSING),
            ("b", Kind.FILE),
            ("day", Kind.FOLDER),
        ]
        with pytest.raises(FileNotFoundError):
            folder.read("a", 10)
        day = folder.folder("day")
        os.rmdir(root / "day")  # removed while open: its listing is empty, looking in it finds nothing
        with day:
            assert list(day.names()) == []
            with pytest.raises(FileNotFoundError):
                day.read("notes.md", 10)
            with pytest.raises(FileNotFoundError):
                day.folder("01")
        with pytest.raises(FileNotFoundError):
            folder.descend(["day", "01"])


# -- names ------------------------------------------------------------------------------------------


def test_a_name_that_is_not_utf8_round_trips_and_is_told_apart(tmp_path):
    root, _ = tree(tmp_path)
    raw = os.fsencode(root) + b"/bad-\xff\xfe.md"
    fd = os.open(raw, os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"content")
    os.close(fd)
    with Folder.open(root) as folder:
        [entry] = folder.entries()
        assert entry.kind is Kind.FILE and not safe_fs.is_utf8(entry.name)
        assert folder.read(entry.name, 100).data == b"content"
    assert safe_fs.is_utf8("plain-é.md")


# -- descriptors --------------------------------------------------------------------------------------


def test_no_descriptor_is_left_open_by_refusals(tmp_path):
    root, secret = tree(tmp_path)
    os.symlink(secret, root / "link")
    os.symlink(secret.parent, root / "dirlink")
    os.mkfifo(root / "fifo")
    (root / "folder").mkdir()
    (root / "big").write_bytes(b"x" * 100)
    before = open_fds()
    with Folder.open(root) as folder:
        for _ in range(20):
            for call in (
                lambda: folder.read("link", 10),
                lambda: folder.read("fifo", 10),
                lambda: folder.read("folder", 10),
                lambda: folder.read("big", 10),
                lambda: folder.read("missing", 10),
                lambda: folder.descend(["folder", "dirlink"]),
                lambda: folder.descend(["dirlink"]),
            ):
                with pytest.raises(OSError):
                    call()
    assert open_fds() == before
