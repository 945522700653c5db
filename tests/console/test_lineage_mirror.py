"""The history mirror's cost stays flat as the lineage grows, and git makes its files readable to the
container's user whatever the supervisor's umask (no walk of the whole mirror at every start)."""

from __future__ import annotations

import os
import stat

from supervisor import lineage_view
from supervisor.git_ops import Git
from supervisor.init_instance import init_instance


def grow(git: Git, number: int) -> None:
    """One more generation: a commit on main with a new file, tagged gen/<number>."""
    main = git.out("rev-parse", "refs/heads/main")
    blob = git.run("hash-object", "-w", "--stdin", input=f"generation {number}\n".encode()).stdout.decode().strip()
    tree = git.run("mktree", input=f"100644 blob {blob}\tg{number}.txt\n".encode()).stdout.decode().strip()
    commit = git.out("commit-tree", tree, "-p", main, "-m", f"gen {number}")
    git.run("update-ref", "refs/heads/main", commit, main)
    git.run("update-ref", f"refs/tags/gen/{number}", commit)


def test_the_mirror_stays_few_files_and_readable_as_generations_accumulate(tmp_path):
    instance = init_instance(tmp_path / "home")
    instance.state.mkdir(parents=True, exist_ok=True)  # as a gatekeeper makes it
    git = Git(instance.repo)
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
