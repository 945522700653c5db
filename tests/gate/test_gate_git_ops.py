"""The safe git runner: compare-and-swap ref moves, safe export, repository discovery without git."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from supervisor.base.git_ops import (
    MAIN_REF,
    ZERO,
    Git,
    GitError,
    RefMovedError,
    TreeEntry,
    find_common_dir,
    resolve_in_tree,
)
from tests.gate.repo_factory import git, make_repo


def _commit_on(g: Git, parent: str, text: str) -> str:
    blob = g.out("hash-object", "-w", "--stdin", input=text.encode())
    tree = g.out("mktree", input=f"100644 blob {blob}\tfile.txt\n".encode())
    return g.commit_tree(tree, [parent], text)


def test_update_ref_is_compare_and_swap(bare_repo: Path) -> None:
    g = Git(bare_repo)
    main = g.ref_value(MAIN_REF)
    first, second = _commit_on(g, main, "one"), _commit_on(g, main, "two")
    g.update_ref(MAIN_REF, first, main)
    with pytest.raises(RefMovedError):
        g.update_ref(MAIN_REF, second, main)  # main no longer holds the expected value
    assert g.ref_value(MAIN_REF) == first
    with pytest.raises(RefMovedError):
        g.update_ref(MAIN_REF, second, ZERO)  # ZERO means "must not exist yet"


def _race(repo: str, new: str, old: str, barrier, results) -> None:
    barrier.wait()
    try:
        Git(Path(repo)).update_ref(MAIN_REF, new, old)
        results.put(new)
    except RefMovedError:
        results.put(None)


def test_racing_writers_exactly_one_wins(bare_repo: Path) -> None:
    g = Git(bare_repo)
    main = g.ref_value(MAIN_REF)
    news = [_commit_on(g, main, f"writer {i}") for i in range(6)]
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(len(news)), context.Queue()
    workers = [context.Process(target=_race, args=(str(bare_repo), new, main, barrier, results)) for new in news]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    outcomes = [results.get(timeout=5) for _ in news]
    winners = [o for o in outcomes if o]
    assert len(winners) == 1
    assert g.ref_value(MAIN_REF) == winners[0]
    assert all(g.rev_parse(new) for new in news)  # the losers' commits still exist: nothing lost


def _blob(g: Git, data: bytes) -> str:
    return g.out("hash-object", "-w", "--stdin", input=data)


def test_export_writes_symlinks_as_links_and_never_follows_them(bare_repo: Path, tmp_path: Path) -> None:
    g = Git(bare_repo)
    tree = g.tree_from_entries(
        [
            TreeEntry("120000", "blob", _blob(g, b"bin/run.sh"), "alias"),
            TreeEntry("100755", "blob", _blob(g, b"hello\n"), "bin/run.sh"),
        ],
        tmp_path,
    )
    dest = tmp_path / "export"
    dest.mkdir()
    assert g.export_tree(tree, dest) == 2
    assert os.readlink(dest / "alias") == "bin/run.sh"
    assert (dest / "bin" / "run.sh").read_text() == "hello\n"
    assert os.stat(dest / "bin" / "run.sh").st_mode & 0o111


def _chain(g: Git, depth: int) -> list[TreeEntry]:
    """`agent/b -> ..`, `agent/u1 -> b/..`, ..., `agent/x -> uN/etc/shadow`: each looks in-tree alone."""
    entries = [TreeEntry("120000", "blob", _blob(g, b".."), "agent/b")]
    for n in range(1, depth + 1):
        entries.append(
            TreeEntry("120000", "blob", _blob(g, b"b/.." if n == 1 else f"u{n - 1}/..".encode()), f"agent/u{n}")
        )
    entries.append(TreeEntry("120000", "blob", _blob(g, f"u{depth}/etc/shadow".encode()), "agent/x"))
    return entries


@pytest.mark.parametrize("target", [b"/etc/passwd", b"../../etc/passwd", b"../.git/config", b"loop"])
def test_export_refuses_links_that_leave_the_tree(bare_repo: Path, tmp_path: Path, target: bytes) -> None:
    g = Git(bare_repo)
    tree = g.tree_from_entries(
        [TreeEntry("120000", "blob", _blob(g, target), "agent/loop" if target == b"loop" else "agent/leak")], tmp_path
    )
    dest = tmp_path / "export"
    dest.mkdir()
    with pytest.raises(GitError, match="resolve outside the tree"):
        g.export_tree(tree, dest)
    assert list(dest.iterdir()) == []


def test_a_chain_of_in_tree_looking_links_is_resolved_component_by_component(bare_repo: Path, tmp_path: Path) -> None:
    g = Git(bare_repo)
    tree = g.tree_from_entries(_chain(g, 30), tmp_path)
    links = g.link_targets(tree)
    assert resolve_in_tree("agent/b", links) == []  # the tree's root: inside
    assert resolve_in_tree("agent/u1", links) is None  # b/.. is the root's parent
    escaping = g.escaping_links(tree)
    assert "agent/x -> 'u30/etc/shadow'" in escaping and "agent/b -> '..'" not in escaping
    dest = tmp_path / "export"
    dest.mkdir()
    with pytest.raises(GitError, match="resolve outside the tree"):
        g.export_tree(tree, dest)
    assert not os.path.lexists(dest / "agent")
    assert resolve_in_tree("a/l", {"a/l": "../a/./m"}) == ["a", "m"]


def test_find_common_dir_bare_clone_and_worktree(tmp_path: Path) -> None:
    bare = make_repo(tmp_path / "b", bare=True)
    clone = make_repo(tmp_path / "c", bare=False)
    assert find_common_dir(bare) == bare.resolve()
    assert find_common_dir(clone / "agent") == (clone / ".git").resolve()
    git(clone, "worktree", "add", "-q", str(tmp_path / "wt"), "-b", "side")
    assert find_common_dir(tmp_path / "wt") == (clone / ".git").resolve()
    with pytest.raises(GitError, match="candidate worktree"):
        find_common_dir(bare / "ouroboros" / "worktrees" / "0-1")


def test_git_never_reads_global_config_or_our_environment(bare_repo: Path, tmp_path: Path, monkeypatch) -> None:
    marker = tmp_path / "ran"
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(f"[core]\n\tfsmonitor = touch {marker}\n\thooksPath = {tmp_path}\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", f"'core.fsmonitor'='touch {marker}'")
    g = Git(bare_repo)
    assert g.rev_parse("main")
    assert g.dangerous_config() == []
    assert not marker.exists()


def test_trusted_config_with_a_filter_driver_is_reported(bare_repo: Path) -> None:
    git(bare_repo, "config", "filter.evil.clean", "touch /tmp/x")
    assert Git(bare_repo).dangerous_config() == ["filter.evil.clean"]


def test_index_only_merge_replays_one_sided_changes_and_refuses_conflicts(bare_repo: Path, tmp_path: Path) -> None:
    g = Git(bare_repo)
    base = g.ref_value(MAIN_REF)
    ours, theirs, clash = (_commit_on(g, base, text) for text in ("ours", "theirs", "ours"))
    assert g.merge_trees(base, ours, theirs, tmp_path) is None  # file.txt changed on both sides
    same = g.merge_trees(base, ours, clash, tmp_path)
    assert same == g.tree_of(ours)  # the same change on both sides merges trivially
