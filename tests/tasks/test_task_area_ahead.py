"""Work areas made ahead (supervisor/work/task_area.py): used only when whole and matching, kill-safe, bounded.

Real parts: a bare mirror made by git, the real export, real folders, FIFOs and symlinks, and a
real `kill -9` of a process in the middle of making an area.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from supervisor.base.git_ops import Git
from supervisor.gate.agent_container import CONTAINER_UID
from supervisor.work.task_area import (
    GONE_PREFIX,
    MAKING_PREFIX,
    READY_AREA,
    READY_MARK,
    READY_PREFIX,
    ReadyMark,
    TaskArea,
)
from tests.gate.repo_factory import git, write_tree
from tests.tasks.task_factory import make_mirror, project_files

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def mirror(tmp_path: Path) -> tuple[Path, str, str]:
    """A mirror with two commits: (mirror, first, second); the second changes calc/ops.py."""
    mirror, first = make_mirror(tmp_path / "p")
    seed = tmp_path / "p" / "seed"
    write_tree(seed, {"calc/ops.py": "VERSION = 2\n"})
    git(seed, "commit", "-qam", "second")
    git(seed, "push", "-q", str(mirror), "main")
    return mirror, first, git(seed, "rev-parse", "HEAD")


@pytest.fixture
def area(tmp_path: Path) -> TaskArea:
    made = TaskArea(tmp_path / "task-work", tmp_path / "run" / "task")
    made.prepare()
    return made


def _leftovers(area: TaskArea) -> list[str]:
    return sorted(p.name for p in area.root.iterdir() if p.name.startswith("."))


def _no_export(*args: object, **kwargs: object) -> int:
    raise AssertionError("the claim exported although a matching area was made ahead")


def test_a_matching_ready_area_is_renamed_into_place_without_an_export(area, mirror, monkeypatch) -> None:
    path, first, _ = mirror
    assert area.prepare_ahead(path, "calc", first) is True
    assert area.prepare_ahead(path, "calc", first) is False  # whole already: nothing made twice
    holder = area.root / f"{READY_PREFIX}calc-{first}"
    assert (holder.stat().st_mode & 0o777) == 0o700  # the agent's user cannot reach it
    inode = (holder / READY_AREA).stat().st_ino
    monkeypatch.setattr(Git, "export_tree", _no_export)
    made = area.create(path, "calc", first)
    assert made == area.path_for("calc") and made.stat().st_ino == inode
    assert (made / "calc" / "ops.py").read_text() == project_files()["calc/ops.py"]
    assert _leftovers(area) == []  # the holder (with its mark) went with it
    if os.geteuid() == 0:  # given to the container's user when it was made
        assert {(made / "calc" / "ops.py").stat().st_uid, made.stat().st_uid} == {CONTAINER_UID}


def test_a_ready_area_of_another_base_commit_is_not_used(area, mirror) -> None:
    path, first, second = mirror
    area.prepare_ahead(path, "calc", first)
    made = area.create(path, "calc", second)
    assert (made / "calc" / "ops.py").read_text() == "VERSION = 2\n"
    assert area.ready("calc", first) is not None  # still the head's, perhaps; the next tick decides
    area.prepare_ahead(path, "calc", second)  # the head changed: the old one goes
    assert _leftovers(area) == [f"{READY_PREFIX}calc-{second}"]


def test_a_ready_area_of_another_project_is_not_used(area, mirror, monkeypatch) -> None:
    path, first, _ = mirror
    area.prepare_ahead(path, "calc", first)
    made = area.create(path, "other", first)
    assert made.name == "other" and (made / "calc" / "ops.py").is_file()
    assert area.path_for("calc").exists() is False


def _tamper_other_mark(holder: Path, second: str) -> None:
    mark = ReadyMark.model_validate_json((holder / READY_MARK).read_bytes())
    (holder / READY_MARK).write_text(mark.model_copy(update={"commit": second}).model_dump_json())


def _tamper_swap(holder: Path, second: str) -> None:
    shutil.copytree(holder / READY_AREA, holder / "copy", symlinks=True)
    (holder / "copy" / "calc" / "ops.py").write_text("planted\n")
    shutil.rmtree(holder / READY_AREA)
    (holder / "copy").rename(holder / READY_AREA)


def _tamper_add(holder: Path, second: str) -> None:
    time.sleep(0.01)  # a coarse clock must still see the change
    (holder / READY_AREA / "planted.py").write_text("import os\n")


def _tamper_link(holder: Path, second: str) -> None:
    elsewhere = holder.parent.parent / "elsewhere"
    (holder / READY_AREA).rename(elsewhere)
    (holder / READY_AREA).symlink_to(elsewhere)


def _tamper_garbage_mark(holder: Path, second: str) -> None:
    (holder / READY_MARK).write_bytes(b"\xff\xfe{not json" * 10)


def _tamper_huge_mark(holder: Path, second: str) -> None:
    (holder / READY_MARK).write_bytes(b" " * 10_000_000)


def _tamper_fifo_mark(holder: Path, second: str) -> None:
    (holder / READY_MARK).unlink()
    os.mkfifo(holder / READY_MARK)


def _tamper_half_made(holder: Path, second: str) -> None:
    (holder / READY_MARK).unlink()  # as a kill between the export and the mark would leave it, if renamed early


def _tamper_not_a_folder(holder: Path, second: str) -> None:
    shutil.rmtree(holder)
    holder.symlink_to("/etc")


@pytest.mark.parametrize(
    "tamper",
    [
        _tamper_other_mark,
        _tamper_swap,
        _tamper_add,
        _tamper_link,
        _tamper_garbage_mark,
        _tamper_huge_mark,
        _tamper_fifo_mark,
        _tamper_half_made,
        _tamper_not_a_folder,
    ],
)
def test_a_half_made_or_altered_ready_area_is_removed_and_the_commit_exported(area, mirror, tamper) -> None:
    path, first, second = mirror
    area.prepare_ahead(path, "calc", first)
    holder = area.root / f"{READY_PREFIX}calc-{first}"
    tamper(holder, second)
    started = time.monotonic()
    made = area.create(path, "calc", first)
    assert time.monotonic() - started < 30  # the FIFO is never waited on
    assert made.is_dir() and not made.is_symlink()
    assert (made / "calc" / "ops.py").read_text() == project_files()["calc/ops.py"]
    assert not (made / "planted.py").exists()
    assert not os.path.lexists(holder)
    assert os.path.exists("/etc/passwd")  # the link's target was never followed into


def test_a_renamed_holder_whose_mark_names_another_commit_is_not_used(area, mirror) -> None:
    path, first, second = mirror
    area.prepare_ahead(path, "calc", second)
    os.rename(area.root / f"{READY_PREFIX}calc-{second}", area.root / f"{READY_PREFIX}calc-{first}")
    made = area.create(path, "calc", first)
    assert (made / "calc" / "ops.py").read_text() == project_files()["calc/ops.py"]


def test_at_most_one_ready_area_is_kept_and_set_aside_areas_go_on_the_next_tick(area, mirror) -> None:
    path, first, second = mirror
    area.prepare_ahead(path, "calc", first)
    area.prepare_ahead(path, "other", first)
    assert _leftovers(area) == [f"{READY_PREFIX}other-{first}"]
    area.create(path, "calc", second)
    area.remove("calc")  # the task ended: gone from the agent's view at once
    assert not area.path_for("calc").exists()
    assert [name for name in _leftovers(area) if name.startswith(GONE_PREFIX)] != []
    assert area.prepare_ahead(path, "other", first) is False  # the next tick: still the head's
    assert _leftovers(area) == [f"{READY_PREFIX}other-{first}"]
    area.tidy()  # nothing queued
    assert _leftovers(area) == []


def test_ahead_never_raises_and_does_not_retry_an_area_that_cannot_be_made(area, tmp_path, monkeypatch) -> None:
    files = {**project_files(), "leak": ""}
    mirror, _ = make_mirror(tmp_path / "bad", files)
    seed = tmp_path / "bad" / "seed"
    (seed / "leak").unlink()
    (seed / "leak").symlink_to("/etc/passwd")
    git(seed, "add", "-A")
    git(seed, "commit", "-qm", "a link out")
    git(seed, "push", "-q", str(mirror), "main")
    bad = git(seed, "rev-parse", "HEAD")
    calls = []
    real = Git.export_tree

    def counted(self: Git, rev: str, dest: Path) -> int:
        calls.append(rev)
        return real(self, rev, dest)

    monkeypatch.setattr(Git, "export_tree", counted)
    area.ahead(mirror, "calc", bad)
    area.ahead(mirror, "calc", bad)
    assert calls == [bad] and _leftovers(area) == []  # refused before a file was written, tried once
    monkeypatch.setattr("supervisor.work.task_area.RETRY_AHEAD_S", 0.0)
    area.ahead(mirror, "calc", bad)
    assert calls == [bad, bad]  # tried again once the pause is over
    monkeypatch.setattr(Git, "link_targets", lambda *a, **k: (_ for _ in ()).throw(OSError(28, "No space left")))
    area.ahead(mirror, "calc", "f" * 40)
    assert _leftovers(area) == []


def test_a_missing_commit_leaves_no_scratch(area, mirror) -> None:
    path, _, _ = mirror
    with pytest.raises(Exception, match="failed"):
        area.prepare_ahead(path, "calc", "e" * 40)
    assert _leftovers(area) == []


KILLED = """
import sys
from pathlib import Path
from supervisor.work.task_area import TaskArea
area = TaskArea(Path(sys.argv[1]), Path(sys.argv[2]))
area.prepare_ahead(Path(sys.argv[3]), "calc", sys.argv[4])
"""


def test_a_kill_while_making_leaves_a_scratch_that_the_next_call_removes(area, tmp_path) -> None:
    files = {f"pkg{n // 100}/m{n % 100}.py": f"N = {n}\n" * 50 for n in range(4000)}
    mirror, base = make_mirror(tmp_path / "big", files)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(area.root), str(area.task_dir), str(mirror), base], env=env
    )
    scratch = area.root / f"{MAKING_PREFIX}calc-{base}"
    deadline = time.monotonic() + 60
    while not (scratch / READY_AREA / "pkg3").exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (scratch / READY_AREA / "pkg3").exists(), "the export ended before the kill; make the tree bigger"
    assert area.ready("calc", base) is None  # nothing half-made is ever taken for a ready area
    TaskArea(area.root, area.task_dir).prepare()  # a restart removes it ...
    assert _leftovers(area) == []
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(area.root), str(area.task_dir), str(mirror), base], env=env
    )
    while not (scratch / READY_AREA).exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert area.prepare_ahead(mirror, "calc", base) is True  # ... and so does the next tick's call
    assert _leftovers(area) == [f"{READY_PREFIX}calc-{base}"]
    made = area.create(mirror, "calc", base)
    assert sum(len(names) for _, _, names in os.walk(made)) == 4000
