"""`supervisor budget`: spend against caps from the ledger the route wrote, for an instance or a repo."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from route_helpers import MODEL, scenario

from supervisor.cli import OuroborosGroup
from supervisor.cli.budget_cmds import budget_cmd
from supervisor.route import LEDGER_FILE_NAME

HUNDRED = {"input_tokens": 60, "output_tokens": 40}


@pytest.fixture
def cli():
    group = OuroborosGroup(name="supervisor")  # the real group: it renders our errors as one line
    group.add_command(budget_cmd)
    runner = CliRunner()
    return lambda *args: runner.invoke(group, ["budget", *args])


@pytest.fixture
def instance(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    subprocess.run(["git", "init", "-q", "--bare", str(home / "repo.git")], check=True)
    (home / "ouroboros.toml").write_text('[route.caps.per_day]\ntokens = 250\n[route.caps.total]\nusd = "10"\n')
    return home


def spend(scripted, make_route, state_dir: Path, requests: int, cycle: str = "c1") -> None:
    upstream = scripted(scenario(HUNDRED, repeat=True))
    harness = make_route(upstream.url)
    for _ in range(requests):
        harness.sdk().messages.create(
            model=MODEL,
            max_tokens=8,
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-ouroboros-cycle": cycle},
        )
    assert (state_dir / LEDGER_FILE_NAME).exists()


@pytest.fixture
def state_dir(instance: Path) -> Path:  # the route writes where the instance keeps its state
    path = instance / "repo.git" / "ouroboros"
    path.mkdir()
    return path


def test_budget_json_shows_spend_against_the_instance_caps(cli, instance, state_dir, scripted, make_route):
    spend(scripted, make_route, state_dir, requests=3)
    result = cli("--home", str(instance), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["spend"]["day"]["tokens"] == 300 and report["spend"]["total"]["requests"] == 3
    assert report["spend"]["last_cycle"]["id"] == "c1"
    caps = {(c["scope"], c["unit"]): c for c in report["caps"]}
    assert caps[("day", "tokens")]["reached"] is True and caps[("day", "tokens")]["cap"] == "250"
    assert caps[("total", "usd")]["reached"] is False
    assert ("cycle", "tokens") in caps  # the default per-cycle cap applies to the latest cycle
    assert report["refusing"] is True


def test_budget_text_from_the_repository_path(cli, instance, state_dir, scripted, make_route):
    spend(scripted, make_route, state_dir, requests=1)
    result = cli("--repo", str(instance / "repo.git"))
    assert result.exit_code == 0, result.output
    assert "100 tokens" in result.output and "ouroboros.toml" in result.output
    assert "REACHED" not in result.output and "40%" in result.output


def test_budget_with_no_ledger_yet_shows_zero(cli, instance):
    result = cli("--home", str(instance), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["spend"]["total"]["tokens"] == 0


def test_budget_errors_are_one_clear_line(cli, tmp_path, instance):
    result = cli("--home", str(tmp_path / "nowhere"))
    assert result.exit_code == 1 and "is not an Ouroboros instance" in result.output
    assert "Traceback" not in result.output
    (instance / "ouroboros.toml").write_text("[route.caps]\nper_week = 1\n")
    result = cli("--home", str(instance))
    assert result.exit_code == 1 and "caps.per_week" in result.output and "fix the file" in result.output


def test_budget_outside_any_instance_or_repository_says_what_to_pass(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OUROBOROS_HOME", raising=False)
    result = cli()
    assert result.exit_code == 1 and "--repo" in result.output and "--home" in result.output
