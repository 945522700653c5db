"""The operator commands end to end on a real bare repository (gate runs use the real engine)."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from supervisor.cli import OuroborosGroup
from supervisor.cli.gate_cmds import COMMANDS
from supervisor.gate.gatekeeper import Gatekeeper
from tests.gate.repo_factory import proposal, write_tree


@click.group(cls=OuroborosGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """The gate commands, grouped as the real `supervisor` group does."""


for _command in COMMANDS:
    cli.add_command(_command)


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, result.output
    return result.output


def test_log_and_verify_log_detect_tampering(offline_gatekeeper: Gatekeeper) -> None:
    candidate = offline_gatekeeper.create_candidate()
    write_tree(Path(candidate.worktree), {"gate.toml": "[gate]\n"})
    offline_gatekeeper.submit(candidate, proposal("loosen the gate"))
    repo = str(offline_gatekeeper.common)
    rows = json.loads(run("candidates", "--repo", repo, "--json"))
    assert rows[0]["state"] == "rejected" and "gate.toml" in "; ".join(rows[0]["reasons"])
    assert "loosen the gate" in run("show", candidate.id, "--repo", repo)
    shown = json.loads(run("show", candidate.id, "--repo", repo, "--json"))
    assert "gate.toml" in shown["diffstat"]
    assert json.loads(run("log", "--repo", repo, "--json", "-n", "5"))[-1]["kind"] == "rejected"
    assert "OK (1 records)" in run("verify-log", "--repo", repo)
    log = offline_gatekeeper.log.path
    log.write_text(log.read_text().replace("rejected", "accepted", 1))
    assert "BROKEN at line 1" in run("verify-log", "--repo", repo, code=1)


def test_usage_and_user_errors_are_one_line(offline_gatekeeper: Gatekeeper, tmp_path: Path) -> None:
    repo = str(offline_gatekeeper.common)
    assert "names no commit" in run("gate", "no-such-rev", "--repo", repo, code=2)
    assert "no candidate 9-9" in run("show", "9-9", "--repo", repo, code=1)
    assert "no earlier generation" in run("rollback", "--repo", repo, code=1)
    assert "no git repository" in run("log", "--repo", str(tmp_path), code=1)
    assert "Traceback" not in run("approve", "1-1", "--repo", repo, code=1)


@pytest.mark.docker
def test_gate_command_exit_codes_and_junit(gatekeeper_factory, tmp_path: Path, monkeypatch) -> None:
    gatekeeper = gatekeeper_factory(bare=False)  # a normal clone, as in CI
    monkeypatch.chdir(gatekeeper.common.parent / "agent")  # default --repo: the repository containing cwd
    monkeypatch.setattr(
        "supervisor.cli.gate_cmds._gatekeeper",
        lambda repo: Gatekeeper(
            repo or Path("."),
            engine=gatekeeper.gate_runner.engine,
            image=gatekeeper.gate_runner.image,
            instance=gatekeeper.gate_runner.instance,
        ),
    )
    report = tmp_path / "gate.xml"
    out = json.loads(run("gate", "--json", "--junit", str(report)))
    assert out["passed"] and "agent.tests.test_calc" in report.read_text()
    write_tree(gatekeeper.common.parent, {"agent/calc.py": "def add(a, b):\n    return 0\n"})
    from tests.gate.repo_factory import git

    git(gatekeeper.common.parent, "commit", "-qam", "break it")
    assert "FAIL" in run("gate", "HEAD", "--base", "HEAD~1", "--junit", str(report), code=1)
    assert 'name="verdict"' in report.read_text() and "<failure" in report.read_text()
