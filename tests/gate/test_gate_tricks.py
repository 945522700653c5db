"""Hostile workspaces: every git/symlink trick is refused, and nothing runs or is read on the host.

Each trick would touch a marker file if git ever executed it; the tests assert the marker never
appears, `main` never moves, and no container is started (the gatekeeper's engine raises if used).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from supervisor.gate.gatekeeper import Gatekeeper
from supervisor.store.journal_writer import JournalError, JournalWriter
from tests.gate.repo_factory import git, proposal, write_tree


def _hook(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\ntouch {marker}\n")
    path.chmod(0o755)


def _evil_gitdir(folder: Path, marker: Path) -> Path:
    """A git dir a hostile agent could craft: hooks, fsmonitor and filter config that touch the marker."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    git(folder.parent, "init", "-q", "--bare", str(folder))
    (folder / "config").write_text(
        f"[core]\n\tbare = false\n\tfsmonitor = touch {marker}\n\thooksPath = {folder}/hooks\n"
        f'[filter "evil"]\n\tclean = touch {marker}\n\tsmudge = touch {marker}\n'
    )
    for name in ("pre-commit", "post-commit", "post-checkout", "reference-transaction", "post-index-change"):
        _hook(folder / "hooks" / name, marker)
    return folder


def _submit(gatekeeper: Gatekeeper, plant) -> tuple:
    main_before = gatekeeper.main()
    candidate = gatekeeper.create_candidate()
    plant(Path(candidate.worktree))
    verdict = gatekeeper.submit(candidate, proposal("trick"))
    assert gatekeeper.main() == main_before
    assert not os.path.exists(Path(candidate.worktree))  # worktree removed after the verdict
    return verdict, candidate


def test_replaced_dot_git_folder_with_hooks_and_config(offline_gatekeeper: Gatekeeper, tmp_path: Path) -> None:
    marker = tmp_path / "marker"

    def plant(ws: Path) -> None:
        (ws / ".git").unlink()
        _evil_gitdir(ws / ".git", marker)
        write_tree(ws, {"agent/calc.py": "x = 1\n"})

    verdict, _ = _submit(offline_gatekeeper, plant)
    assert verdict.state == "rejected"
    assert "replaced by a folder" in verdict.reasons[0]
    assert not marker.exists()


def test_repointed_dot_git_file(offline_gatekeeper: Gatekeeper, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    evil = _evil_gitdir(tmp_path / "evil.git", marker)

    def plant(ws: Path) -> None:
        (ws / ".git").write_text(f"gitdir: {evil}\n")
        write_tree(ws, {"agent/calc.py": "x = 1\n"})

    verdict, _ = _submit(offline_gatekeeper, plant)
    assert verdict.state == "rejected" and "rewritten to point elsewhere" in verdict.reasons[0]
    assert not marker.exists()


def test_gitattributes_filter_is_protected_and_never_runs(offline_gatekeeper: Gatekeeper, tmp_path: Path) -> None:
    marker = tmp_path / "marker"

    def plant(ws: Path) -> None:
        write_tree(
            ws,
            {
                ".gitattributes": "* filter=evil diff=evil merge=evil\n",
                "agent/.gitattributes": "* filter=evil\n",
                "agent/calc.py": "x = 1\n",
            },
        )

    verdict, candidate = _submit(offline_gatekeeper, plant)
    assert verdict.state == "rejected"
    assert any(".gitattributes (protected" in hit for hit in verdict.protected)
    assert not marker.exists()
    # The rejected commit stays inspectable, with the file as plain data.
    assert offline_gatekeeper.git.read_blob(candidate.rejected_ref, ".gitattributes") is not None


@pytest.mark.parametrize("target", ["/etc/passwd", "../../../../../../etc/shadow", "HOST_REPO", "../.git"])
def test_symlinks_out_of_the_tree_are_refused(offline_gatekeeper: Gatekeeper, target: str) -> None:
    target = str(offline_gatekeeper.common) if target == "HOST_REPO" else target

    def plant(ws: Path) -> None:
        os.symlink(target, ws / "agent" / "leak")
        write_tree(ws, {"agent/calc.py": "x = 1\n"})

    verdict, candidate = _submit(offline_gatekeeper, plant)
    assert verdict.state == "rejected" and "leaves the tree" in verdict.reasons[0]
    tree = {entry.path for entry in offline_gatekeeper.git.ls_tree(candidate.rejected_ref)}
    assert "agent/leak" not in tree  # nothing of the host was copied in


def test_nested_repository_and_special_files_are_refused(offline_gatekeeper: Gatekeeper, tmp_path: Path) -> None:
    marker = tmp_path / "marker"

    def plant(ws: Path) -> None:
        _evil_gitdir(ws / "agent" / "sub" / ".git", marker)
        os.mkfifo(ws / "agent" / "pipe")  # reading it naively would hang the supervisor
        write_tree(ws, {"agent/calc.py": "x = 1\n"})

    verdict, _ = _submit(offline_gatekeeper, plant)
    reasons = verdict.reasons[0]
    assert "nested git repository" in reasons and "agent/pipe: not a regular file" in reasons
    assert not marker.exists()


def test_hooks_in_the_trusted_repository_never_run(offline_gatekeeper: Gatekeeper, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    for name in ("post-checkout", "reference-transaction", "pre-commit", "post-commit", "pre-auto-gc"):
        _hook(offline_gatekeeper.common / "hooks" / name, marker)
    candidate = offline_gatekeeper.create_candidate()
    verdict = offline_gatekeeper.submit(candidate, proposal("nothing"))
    assert verdict.state == "rejected" and "changes nothing" in verdict.reasons[0]
    assert not marker.exists()


def test_memory_paths_never_enter_a_proposal(offline_gatekeeper: Gatekeeper) -> None:
    candidate = offline_gatekeeper.create_candidate()
    write_tree(Path(candidate.worktree), {"agent/journal/2026/notes.md": "thoughts\n", "agent/goals/active.md": "x\n"})
    verdict = offline_gatekeeper.submit(candidate, proposal("memory only"))
    assert verdict.state == "rejected" and "changes nothing outside memory paths" in verdict.reasons[0]


def test_protected_path_rejected_before_any_container(offline_gatekeeper: Gatekeeper) -> None:
    def plant(ws: Path) -> None:
        write_tree(
            ws,
            {
                "gate.toml": "[gate]\ndeadline_s = 1\ncommand = ['true']\n",
                "sitecustomize.py": "",
                "agent/conftest.py": "",
                "agent/tests/pytest.ini": "[pytest]\n",
            },
        )

    verdict, _ = _submit(offline_gatekeeper, plant)
    assert verdict.state == "rejected"
    hits = " ".join(verdict.protected)
    for path in ("gate.toml", "sitecustomize.py (new top-level", "agent/conftest.py", "agent/tests/pytest.ini"):
        assert path in hits


def test_journal_writer_never_writes_through_a_planted_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("host file\n")
    journal = tmp_path / "journal"
    writer = JournalWriter(journal)
    path = writer.write("gate-rejected", "first")
    path.unlink()
    os.symlink(victim, path)
    with pytest.raises(JournalError):
        writer.write("gate-rejected", "second")
    day = path.parent
    for child in day.iterdir():
        child.unlink()
    day.rmdir()
    os.symlink(tmp_path, day)  # a folder link too
    with pytest.raises(JournalError):
        writer.write("gate-rejected", "third")
    assert victim.read_text() == "host file\n"


def test_journal_entry_format(tmp_path: Path) -> None:
    path = JournalWriter(tmp_path).write("gate-accepted", "Candidate 1-1: accepted.")
    text = path.read_text()
    assert path.relative_to(tmp_path).parts[-1] == "notes.md" and len(path.relative_to(tmp_path).parts) == 4
    assert text.startswith("\n## ") and text.split("\n")[1].endswith("Z gate-accepted")


def test_a_sabotaged_journal_does_not_block_the_verdict(offline_gatekeeper: Gatekeeper, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("host\n")
    day = offline_gatekeeper.journal.write("setup", "x").parent
    (day / "notes.md").unlink()
    os.symlink(victim, day / "notes.md")
    candidate = offline_gatekeeper.create_candidate()
    write_tree(Path(candidate.worktree), {"gate.toml": "[gate]\n"})
    verdict = offline_gatekeeper.submit(candidate, proposal("loosen"))
    assert verdict.state == "rejected" and offline_gatekeeper.store.load(candidate.id).state == "rejected"
    assert offline_gatekeeper.log.find("journal-refused", candidate=candidate.id)
    assert victim.read_text() == "host\n"


def test_in_tree_symlinks_are_kept_as_links(tmp_path: Path) -> None:
    from supervisor.gate.config import GateConfig
    from supervisor.gate.workspace_commit import snapshot_workspace

    workspace, staging = tmp_path / "ws", tmp_path / "stage"
    write_tree(workspace, {".git": "gitdir: /x\n", "agent/real.py": "X = 1\n"})
    os.symlink("real.py", workspace / "agent" / "alias.py")
    snapshot = snapshot_workspace(workspace, staging, GateConfig(), "gitdir: /x\n")
    assert snapshot.refused == [] and snapshot.files == 2
    assert os.readlink(staging / "agent" / "alias.py") == "real.py"
    assert not (staging / ".git").exists()


def test_abandon_only_pending_candidates(offline_gatekeeper: Gatekeeper) -> None:
    from supervisor.store.candidates import CandidateError

    candidate = offline_gatekeeper.create_candidate()
    record = offline_gatekeeper.abandon(candidate.id, "main moved")
    assert record.state == "abandoned" and not os.path.exists(candidate.worktree)
    assert offline_gatekeeper.git.ref_value(candidate.branch) is None
    with pytest.raises(CandidateError):
        offline_gatekeeper.abandon(candidate.id, "again")


def test_a_normal_clone_works_like_a_bare_repository(tmp_path: Path) -> None:
    from tests.gate.repo_factory import make_repo

    clone = make_repo(tmp_path, bare=False)
    gatekeeper = Gatekeeper(clone, engine=None, image="never-used")
    assert gatekeeper.state_dir == (clone / ".git" / "ouroboros").resolve()
    candidate = gatekeeper.create_candidate()
    write_tree(Path(candidate.worktree), {"gate.toml": "[gate]\n", "agent/new.py": "X = 1\n"})
    verdict = gatekeeper.submit(candidate, proposal("loosen"))
    assert verdict.state == "rejected" and "gate.toml (protected: gate.toml)" in verdict.protected
    assert gatekeeper.git.read_blob(candidate.rejected_ref, "agent/new.py") == b"X = 1\n"
    assert git(clone, "status", "--porcelain") == ""  # the operator's own checkout is untouched
