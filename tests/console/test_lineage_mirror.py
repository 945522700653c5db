"""The history mirror's cost stays flat as the lineage grows, and git makes its files readable to the
container's user whatever the supervisor's umask (no walk of the whole mirror at every start)."""

from __future__ import annotations

import os
import stat

import pytest

from supervisor.base.git_ops import Git, GitError
from supervisor.loop import lineage_view
from supervisor.store.instance_init import init_instance


def fresh(tmp_path):
    """A new instance with its state folder (as a gatekeeper makes it) and its trusted repository."""
    instance = init_instance(tmp_path / "home")
    instance.state.mkdir(parents=True, exist_ok=True)
    return instance, Git(instance.repo)


def grow(git: Git, number: int) -> None:
    """One more generation: a commit on main with a new file, tagged gen/<number>."""
    main = git.out("rev-parse", "refs/heads/main")
    blob = git.run("hash-object", "-w", "--stdin", input=f"generation {number}\n".encode()).stdout.decode().strip()
    tree = git.run("mktree", input=f"100644 blob {blob}\tg{number}.txt\n".encode()).stdout.decode().strip()
    commit = git.out("commit-tree", tree, "-p", main, "-m", f"gen {number}")
    git.run("update-ref", "refs/heads/main", commit, main)
    git.run("update-ref", f"refs/tags/gen/{number}", commit)


def test_the_mirror_stays_few_files_and_readable_as_generations_accumulate(tmp_path):
    instance, git = fresh(tmp_path)
    old = os.umask(0o077)  # a supervisor under a strict umask (systemd's UMask=0077)
    try:
        counts = []
        for number in range(1, 61):
            grow(git, number)
            folder = lineage_view.build(instance)
            counts.append(sum(len(files) for _root, _dirs, files in os.walk(folder)))
    finally:
        os.umask(old)
    assert max(counts[30:]) <= max(counts[:30]) + 5, counts  # compacted: no file per fetched object
    mirror = Git(folder / "repo.git")
    assert mirror.out("rev-parse", "refs/tags/gen/60") == git.out("rev-parse", "refs/tags/gen/60")
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            mode = os.stat(os.path.join(root, name)).st_mode
            assert mode & stat.S_IROTH and mode & stat.S_IXOTH, os.path.join(root, name)
        for name in files:
            assert os.stat(os.path.join(root, name)).st_mode & stat.S_IROTH, os.path.join(root, name)


def mirror_state(folder) -> dict[str, str]:
    mirror = Git(folder / "repo.git")
    mirror.run("fsck", "--connectivity-only", "--no-dangling")  # every ref's objects are all there
    return mirror.refs("refs/heads", "refs/tags")


def test_the_mirror_follows_every_kind_of_ref_move_and_copies_only_what_it_lacks(tmp_path):
    instance, git = fresh(tmp_path)
    for number in range(1, 4):
        grow(git, number)
    folder = lineage_view.build(instance)
    assert mirror_state(folder) == lineage_view.wanted_refs(git)
    # A rejected proposal appears, main moves back (a rollback keeps the old tip), the rejected one
    # is pruned by retention: the mirror follows each move, names as the agent knows them.
    three = git.out("rev-parse", "refs/heads/main")
    grow(git, 4)
    git.run("update-ref", "refs/ouroboros/rejected/c-1", git.out("rev-parse", "refs/tags/gen/4"))
    lineage_view.build(instance)
    assert mirror_state(folder)["refs/heads/rejected/c-1"] == git.out("rev-parse", "refs/tags/gen/4")
    git.run("update-ref", "refs/ouroboros/rolled-back/4", git.out("rev-parse", "refs/heads/main"))
    git.run("update-ref", "refs/heads/main", three)
    git.run("update-ref", "-d", "refs/ouroboros/rejected/c-1")
    state = mirror_state(lineage_view.build(instance))
    assert state == lineage_view.wanted_refs(git)
    assert state["refs/heads/main"] == three and "refs/heads/rejected/c-1" not in state
    # Nothing new: no pack is written at all.
    packs = sorted(os.listdir(folder / "repo.git" / "objects" / "pack"))
    lineage_view.build(instance)
    assert sorted(os.listdir(folder / "repo.git" / "objects" / "pack")) == packs


def test_a_mirror_whose_main_the_trusted_side_no_longer_has_is_rebuilt_whole(tmp_path):
    """The mirror's main is the basis of what is copied; if the trusted repository pruned that
    commit (a rolled-back generation past retention), everything wanted is copied instead."""
    instance, git = fresh(tmp_path)
    grow(git, 1)
    folder = lineage_view.build(instance)
    mirror = Git(folder / "repo.git")
    orphan = mirror.out("commit-tree", mirror.out("rev-parse", "refs/heads/main^{tree}"), "-m", "only here")
    mirror.run("update-ref", "refs/heads/main", orphan)
    grow(git, 2)
    assert mirror_state(lineage_view.build(instance)) == lineage_view.wanted_refs(git)


def test_a_build_killed_between_the_pack_and_the_refs_is_finished_by_the_next(tmp_path, monkeypatch):
    instance, git = fresh(tmp_path)
    grow(git, 1)
    folder = lineage_view.build(instance)
    grow(git, 2)
    real_run = Git.run

    def killed_at_update_ref(self, *args, **kwargs):
        if "update-ref" in args:
            raise KeyboardInterrupt  # stands for a kill: nothing after this point runs
        return real_run(self, *args, **kwargs)

    monkeypatch.setattr(Git, "run", killed_at_update_ref)
    try:
        lineage_view.build(instance)
    except KeyboardInterrupt:
        pass
    monkeypatch.setattr(Git, "run", real_run)
    assert mirror_state(folder)["refs/heads/main"] != git.out("rev-parse", "refs/heads/main")
    assert mirror_state(lineage_view.build(instance)) == lineage_view.wanted_refs(git)


def test_a_first_build_of_a_long_lineage_leaves_one_file_of_refs_not_one_per_generation(tmp_path):
    """Every start lists the mirror's refs: thousands of loose ref files (a first build, or a mirror
    rebuilt after a disk loss) were read at each start until the packs reached a compaction."""
    instance, git = fresh(tmp_path)
    main = git.out("rev-parse", "refs/heads/main")
    commands = "".join(f"create refs/tags/gen/{number} {main}\n" for number in range(1, 301))
    git.run("update-ref", "--stdin", input=commands.encode())
    folder = lineage_view.build(instance)
    assert mirror_state(folder) == lineage_view.wanted_refs(git)
    loose = list((folder / "repo.git" / "refs" / "tags").rglob("*"))
    assert not [path for path in loose if path.is_file()], len(loose)


def test_names_whose_order_differs_as_text_and_as_numbers_are_compared_right(tmp_path):
    """The two sides are compared as sorted listings: names that are prefixes of others (gen/1,
    gen/10, gen/100), every kind of ref at once, a tip that moves and one that goes, each in
    either direction; a ref of another kind in the mirror is left alone (only ours are compared)."""
    instance, git = fresh(tmp_path)
    for number in range(1, 12):
        grow(git, number)
    main = git.out("rev-parse", "refs/heads/main")
    first = git.out("rev-parse", "refs/tags/gen/1")
    commands = "".join(f"create refs/tags/gen/{number} {main}\n" for number in (100, 101, 1000))
    commands += "".join(f"create refs/ouroboros/rejected/{name} {first}\n" for name in ("1-1", "1-10", "1-2", "10-1"))
    commands += f"create refs/ouroboros/rolled-back/1 {main}\ncreate refs/ouroboros/rolled-back/10 {first}\n"
    git.run("update-ref", "--stdin", input=commands.encode())
    folder = lineage_view.build(instance)
    mirror = Git(folder / "repo.git")
    mirror.run("update-ref", "refs/tags/operator-note", first)
    assert lineage_view.ref_changes(git, mirror) == ({}, [])
    git.run("update-ref", "refs/ouroboros/rejected/1-10", main)  # moved
    git.run("update-ref", "-d", "refs/ouroboros/rejected/1-1")  # gone
    git.run("update-ref", "-d", "refs/tags/gen/100")
    git.run("update-ref", "refs/tags/gen/10000", first)  # new
    changed, gone = lineage_view.ref_changes(git, mirror)
    assert changed == {"refs/heads/rejected/1-10": main, "refs/tags/gen/10000": first}
    assert gone == ["refs/heads/rejected/1-1", "refs/tags/gen/100"]
    state = mirror_state(lineage_view.build(instance))
    assert {ref: sha for ref, sha in state.items() if ref != "refs/tags/operator-note"} == lineage_view.wanted_refs(git)
    assert state["refs/tags/operator-note"] == first


def test_a_listing_that_fails_is_an_error_not_an_empty_side(tmp_path, monkeypatch):
    """A side whose listing fails must not read as "no refs" (every ref of the mirror would be deleted)."""
    instance, git = fresh(tmp_path)
    grow(git, 1)
    folder = lineage_view.build(instance)
    mirror = Git(folder / "repo.git")
    broken = Git(tmp_path / "not-a-repository")
    (tmp_path / "not-a-repository").mkdir()
    with pytest.raises(GitError):
        lineage_view.ref_changes(broken, mirror)
    assert mirror_state(folder) == lineage_view.wanted_refs(git)
