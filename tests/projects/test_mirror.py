"""The supervisor's project mirror: made whole or not at all, fetched forced and pruned, limits refused."""

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
from supervisor.store.projects import ProjectError
from supervisor.work.git_fetch import folder_mb
from supervisor.work.mirror import (
    FetchReport,
    MirrorSizeError,
    check_commit,
    create_mirror,
    fetch,
    project_lock,
    resolve_commit,
)
from tests.gate.repo_factory import git
from tests.projects.sources import commit, config, leftovers, make_source, registry, silent_server

ROOT = Path(__file__).resolve().parents[2]


def test_add_makes_a_bare_mirror_of_every_branch_and_tag_and_saves_the_config_last(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src")
    git(source, "branch", "feature")
    projects = registry(tmp_path)
    relative = os.path.relpath(source, Path.cwd())
    report = create_mirror(projects, config("demo", relative, default_branch="main"))
    head = git(source, "rev-parse", "HEAD")
    assert isinstance(report, FetchReport)
    assert (report.name, report.refs, report.head, report.default_branch) == ("demo", 3, head, "main")
    assert report.notes == [] and report.size_mb > 0 and report.seconds >= 0
    saved = projects.get("demo")
    assert saved.source == str(source.resolve())  # a local path is stored absolute
    mirror = projects.mirror("demo")
    assert Git(mirror).out("rev-parse", "--is-bare-repository") == "true"
    assert Git(mirror).out("symbolic-ref", "HEAD") == "refs/heads/main"
    assert sorted(Git(mirror).refs("refs/")) == ["refs/heads/feature", "refs/heads/main", "refs/tags/v1"]
    assert not (mirror / "hooks").exists()  # no template: not even sample hooks
    assert leftovers(projects) == ["demo"]


def test_resolve_commit_names_branches_tags_and_ids_and_says_how_to_fix_a_missing_one(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src")
    first = git(source, "rev-parse", "HEAD")
    (source / "more.py").write_text("x = 1\n")
    second = commit(source, "second")
    git(source, "tag", "-a", "v2", "-m", "annotated")
    projects = registry(tmp_path)
    create_mirror(projects, config("demo", source))
    mirror = projects.mirror("demo")
    assert resolve_commit(mirror, "main") == second
    assert resolve_commit(mirror, "v1") == first
    assert resolve_commit(mirror, "v2") == second  # an annotated tag is peeled to its commit
    assert resolve_commit(mirror, first) == first
    assert resolve_commit(mirror, first[:10]) == first
    with pytest.raises(
        ProjectError, match=r"base commit 0{40} does not exist in project demo; run `supervisor project fetch demo`"
    ):
        resolve_commit(mirror, "0" * 40)
    for hostile in ("", "--output=/tmp/x", "main\nv1", "a b", "x" * 300):
        with pytest.raises(ProjectError, match="is not a branch, tag or commit id"):
            resolve_commit(mirror, hostile)
    with pytest.raises(ProjectError, match="has no mirror"):
        resolve_commit(tmp_path / "nowhere" / "mirror.git", "main")


def test_fetch_again_is_forced_and_pruned(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src")
    git(source, "branch", "gone")
    projects = registry(tmp_path)
    create_mirror(projects, config("demo", source))
    old = git(source, "rev-parse", "HEAD")
    (source / "calc.py").write_text("def add(a, b):\n    return b + a\n")
    git(source, "commit", "-q", "-a", "--amend", "-m", "rewritten")  # history rewritten: a forced update
    git(source, "branch", "-D", "gone")
    git(source, "tag", "-f", "v1")
    git(source, "branch", "new")
    new = git(source, "rev-parse", "HEAD")
    report = fetch(projects, "demo")
    refs = Git(projects.mirror("demo")).refs("refs/")
    assert refs == {"refs/heads/main": new, "refs/heads/new": new, "refs/tags/v1": new}
    assert report.head == new != old and report.refs == 3


def test_fetch_remakes_a_lost_mirror_and_notes_a_default_branch_the_source_dropped(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src")
    projects = registry(tmp_path)
    create_mirror(projects, config("demo", source))
    Git(projects.mirror("demo")).run("update-ref", "refs/ouroboros/task/1", "main")  # the supervisor's own refs
    git(source, "checkout", "-q", "-b", "trunk")
    git(source, "branch", "-D", "main")
    report = fetch(projects, "demo")
    assert report.head is None and "has no branch 'main' (its branches: trunk)" in report.notes[0]
    assert "refs/ouroboros/task/1" in Git(projects.mirror("demo")).refs("refs/ouroboros/")  # not pruned
    shutil.rmtree(projects.mirror("demo"))
    assert fetch(projects, "demo").refs == 2


def test_a_missing_default_branch_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src", branch="trunk")
    projects = registry(tmp_path)
    with pytest.raises(ProjectError, match=r"has no branch 'main' \(its branches: trunk\); pass --branch"):
        create_mirror(projects, config("demo", source))
    assert leftovers(projects) == [] and projects.names() == []
    with pytest.raises(ProjectError, match="not a valid branch name"):
        create_mirror(projects, config("demo", source, default_branch="a..b"))


def test_names_and_sources_are_validated_before_anything_is_made(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src")
    projects = registry(tmp_path)
    create_mirror(projects, config("demo", source))
    with pytest.raises(ProjectError, match="already exists; `supervisor project fetch demo`"):
        create_mirror(projects, config("demo", source))
    for bad in ("Demo", "../x", "a/b", ".hidden", "x" * 64):
        with pytest.raises(ProjectError, match="is not a project name"):
            projects.folder(bad)
    with pytest.raises(ProjectError, match="no such folder"):
        create_mirror(projects, config("other", tmp_path / "missing"))
    with pytest.raises(ProjectError, match="no git repository there"):
        create_mirror(projects, config("other", tmp_path))
    assert leftovers(projects) == ["demo"]


def test_submodules_are_refused_with_what_to_do(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src")
    head = git(source, "rev-parse", "HEAD")
    (source / ".gitmodules").write_text('[submodule "lib"]\n\tpath = lib\n\turl = ../lib\n')
    git(source, "add", ".gitmodules")
    git(source, "update-index", "--add", "--cacheinfo", f"160000,{head},lib")
    git(source, "commit", "-q", "-m", "a submodule")
    projects = registry(tmp_path)
    with pytest.raises(ProjectError, match=r"has submodules \(lib\); submodules are not supported: vendor"):
        create_mirror(projects, config("demo", source))
    assert leftovers(projects) == []
    git(source, "branch", "base", head)
    create_mirror(projects, config("demo", source, default_branch="base"))
    mirror = projects.mirror("demo")
    check_commit(mirror, head, projects.get("demo"))
    with pytest.raises(ProjectError, match="submodules are not supported"):
        check_commit(mirror, resolve_commit(mirror, "main"), projects.get("demo"))


def test_a_gitmodules_file_alone_is_refused_too(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src", {"a.py": "", "vendor/.gitmodules": "[submodule]\n"})
    projects = registry(tmp_path)
    with pytest.raises(ProjectError, match=r"has submodules \(vendor/.gitmodules\)"):
        create_mirror(projects, config("demo", source))


def test_more_files_than_max_files_is_refused(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src", {f"f{i}.py": "" for i in range(5)})
    projects = registry(tmp_path)
    with pytest.raises(ProjectError, match="has 5 files, more than max_files = 4; raise max_files"):
        create_mirror(projects, config("demo", source, max_files=4))
    assert leftovers(projects) == []
    create_mirror(projects, config("demo", source, max_files=5))


def _big_file(path: Path, megabytes: float) -> None:
    path.write_bytes(os.urandom(int(megabytes * 1024 * 1024)))  # random: git cannot compress it


def test_an_oversize_source_is_refused_and_nothing_is_added(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src")
    _big_file(source / "blob.bin", 3)
    commit(source, "big")
    projects = registry(tmp_path)
    with pytest.raises(MirrorSizeError, match=r"grew past max_mirror_mb = 1 \(.* MB\) and was refused; raise"):
        create_mirror(projects, config("demo", source, max_mirror_mb=1))
    assert leftovers(projects) == [] and projects.names() == []


def test_an_oversize_fetch_keeps_the_old_refs_and_drops_what_it_brought(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src")
    projects = registry(tmp_path)
    create_mirror(projects, config("demo", source, max_mirror_mb=2))
    before = Git(projects.mirror("demo")).refs("refs/")
    _big_file(source / "blob.bin", 3)
    commit(source, "big")
    git(source, "branch", "extra")
    with pytest.raises(MirrorSizeError, match="max_mirror_mb = 2"):
        fetch(projects, "demo")
    mirror = projects.mirror("demo")
    assert Git(mirror).refs("refs/") == before
    assert folder_mb(mirror) < 1  # the 3 MB the refused fetch brought are gone


def test_a_refused_fetch_drops_only_what_it_brought(tmp_path: Path) -> None:
    """A task queued on a commit the source later force-pushed away, and objects the supervisor wrote
    and has not referenced yet (a snapshot, a judged tree): a refused fetch must not prune them."""
    source = make_source(tmp_path / "src")
    projects = registry(tmp_path)
    create_mirror(projects, config("demo", source, max_mirror_mb=2))
    mirror = Git(projects.mirror("demo"))
    queued_base = git(source, "rev-parse", "HEAD")
    git(source, "commit", "-q", "--amend", "-m", "rewritten")  # force-pushed: the queued base is unreachable
    fetch(projects, "demo")
    unreferenced = mirror.out("hash-object", "-w", "--stdin", input=b"a judged tree's blob\n")
    _big_file(source / "blob.bin", 3)
    commit(source, "big")
    with pytest.raises(MirrorSizeError):
        fetch(projects, "demo")
    assert mirror.rev_parse(queued_base) == queued_base
    assert mirror.run("cat-file", "-e", unreferenced, check=False).returncode == 0
    assert folder_mb(projects.mirror("demo")) < 1  # the 3 MB the refused fetch brought are gone


def test_kill_safety_leftovers_of_an_interrupted_add_are_cleared_by_the_next(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src")
    projects = registry(tmp_path)
    scratch = projects.root / ".adding+demo+123+abcdef12" / "mirror.git"
    scratch.mkdir(parents=True)
    (scratch / "HEAD").write_text("junk")
    renamed_in = projects.root / "demo" / "mirror.git"  # killed after the rename, before project.toml
    renamed_in.mkdir(parents=True)
    other = projects.root / ".adding+demo-two+1+ffffffff"  # another name's scratch: not ours to clear
    other.mkdir()
    assert projects.names() == [] and not projects.exists("demo")
    said: list[str] = []
    create_mirror(projects, config("demo", source), said.append)
    assert leftovers(projects) == [".adding+demo-two+1+ffffffff", "demo"]
    assert any("interrupted" in line for line in said)
    assert projects.get("demo").default_branch == "main"


def _processes_naming(path: Path) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(path) in text and cmdline.parent.name != str(os.getpid()):
            found.append(text)
    return found


KILLED_ADD = """
import sys
from pathlib import Path
from supervisor.store.projects import ProjectConfig, ProjectRegistry
from supervisor.work.mirror import create_mirror
create_mirror(ProjectRegistry(Path(sys.argv[1])), ProjectConfig(name="demo", source=sys.argv[2]))
"""


def test_kill_9_during_add_leaves_no_project_and_the_next_add_works(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src")
    projects = registry(tmp_path)
    with silent_server() as url:
        child = subprocess.Popen(
            [sys.executable, "-c", KILLED_ADD, str(projects.root), url],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        deadline = time.monotonic() + 30
        while not list(projects.root.glob(".adding+demo+*/mirror.git/HEAD")) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # git is now waiting on the server
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        time.sleep(0.2)
        assert not _processes_naming(projects.root)  # the git fetch died with its parent
    assert list(projects.root.glob(".adding+demo+*")) and projects.names() == []
    with pytest.raises(ProjectError, match="no project named 'demo'"):
        fetch(projects, "demo")
    create_mirror(projects, config("demo", source))
    assert leftovers(projects) == ["demo"] and projects.names() == ["demo"]


def test_one_command_at_a_time_per_project(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src")
    projects = registry(tmp_path)
    with project_lock(projects, "demo"):
        with pytest.raises(ProjectError, match="another supervisor command is adding, fetching or removing"):
            create_mirror(projects, config("demo", source))
        create_mirror(projects, config("other", source))
    create_mirror(projects, config("demo", source))


def test_a_fetch_that_fails_keeps_the_mirror_as_it_was(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src")
    projects = registry(tmp_path)
    create_mirror(projects, config("demo", source))
    before = Git(projects.mirror("demo")).refs("refs/")
    with silent_server() as url:
        projects.save(projects.get("demo").model_copy(update={"source": url}))
        with pytest.raises(ProjectError, match="took longer than 1 s"):
            fetch(projects, "demo", timeout_s=1)
    shutil.move(source, tmp_path / "moved")
    projects.save(projects.get("demo").model_copy(update={"source": str(source)}))
    with pytest.raises(ProjectError, match="no such folder"):
        fetch(projects, "demo")
    assert Git(projects.mirror("demo")).refs("refs/") == before
    assert not list((projects.mirror("demo") / "objects" / "pack").glob("tmp_*"))
