"""An instance made by the previous release (the flat `supervisor/` of 5fda7ed) opens and starts on this one.

The fixture is what that release's `supervisor init --scenario idle_loop.json` wrote, generation 0
gated in a real container: ouroboros.toml, memory/, and repo.git (refs, objects, the gate's state
under repo.git/ouroboros). Made once with

    git worktree add --detach /tmp/oldrel 5fda7ed
    cd /tmp/oldrel && python -m supervisor init /tmp/oldinst --scenario /tmp/oldinst-src/idle_loop.json
    tar --sort=name --owner=0 --group=0 --numeric-owner --exclude=./repo.git/hooks \\
        --exclude=./repo.git/description -C /tmp/oldinst -cf - . | gzip -9n > old_instance_5fda7ed.tar.gz

The only paths in it that name the old place are the scenario (ouroboros.toml) and the remembered
journal (repo.git/ouroboros/journal-root); `start` rewrites the second itself.
"""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import pytest

from supervisor.gate.gatekeeper import Gatekeeper
from supervisor.store.instance import Instance
from supervisor.store.instance_init import package_dir
from tests.operator.conftest import ROOT, cli, cli_json
from tests.system.conftest import SupervisorProcess, containers_of, wait_until

FIXTURE = ROOT / "tests" / "fixtures" / "old_instance_5fda7ed.tar.gz"
GEN0 = "dea347b6979d26c08d2250fc8424973409ca1077"
OLD_SCENARIO = '"/tmp/oldinst-src/idle_loop.json"'


@pytest.fixture
def old_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    with tarfile.open(FIXTURE) as archive:
        # Our own fixture; the "data" filter where this Python has it (3.11.4+; the image's 3.11.2 has not).
        archive.extractall(home, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    return home


def test_the_fixture_is_small_and_is_the_old_layout(old_home: Path) -> None:
    assert FIXTURE.stat().st_size < 1_000_000
    config = (old_home / "ouroboros.toml").read_text()
    assert f"scripted_scenario = {OLD_SCENARIO}" in config
    assert (old_home / "repo.git" / "refs" / "tags" / "gen" / "0").read_text().strip() == GEN0
    assert not (old_home / "run").exists()  # never started


def test_config_check_status_candidates_and_log_read_it(old_home: Path) -> None:
    home = str(old_home)
    check = cli_json("config", "check", "--home", home)
    assert check["ok"] is True and {entry["kind"] for entry in check["files"]} == {"ouroboros.toml", "gate.toml"}
    status = cli_json("status", "--home", home, code=3)
    assert status["running"] is False and status["state"] == "never started"
    assert status["generation"] == 0 and status["commit"] == GEN0
    assert cli_json("candidates", "--home", home) == []
    verified = cli_json("verify-log", "--home", home)
    assert verified["ok"] is True and verified["records"] == 1
    (genesis,) = cli_json("log", "--home", home)
    assert genesis["kind"] == "genesis" and genesis["generation"] == 0 and genesis["main_after"] == GEN0
    assert "genesis" in cli("log", "--home", home)[1]


def test_the_gatekeeper_opens_its_repository(old_home: Path) -> None:
    gatekeeper = Gatekeeper(old_home / "repo.git")
    assert gatekeeper.main() == GEN0
    assert gatekeeper.generations() == {0: GEN0}
    assert gatekeeper.log.verify().ok


@pytest.mark.docker
def test_it_starts_runs_the_agent_and_stops(old_home: Path, docker_engine, agent_image) -> None:
    # What an operator of the old release had to do too: point the scenario at a file that exists
    # (this checkout's copy of the same one) and allow the model the scripted agent asks for.
    config = old_home / "ouroboros.toml"
    scenario = package_dir("scripted_model") / "scenarios" / "idle_loop.json"
    text = config.read_text().replace(OLD_SCENARIO, json.dumps(str(scenario)))
    config.write_text(text.replace('# model = "claude-sonnet-5-5"', 'model = "claude-sonnet-5-5"'))
    instance = Instance(old_home)
    process = SupervisorProcess(instance)
    try:
        process.wait_for(r"agent running: generation 0 \(dea347b6979d\), candidate 0-1")
        assert wait_until(lambda: bool(containers_of(docker_engine, instance)), timeout=30)
        assert cli_json("status", "--home", str(old_home))["state"] == "running"
        stopped = cli_json("stop", "--home", str(old_home))
        assert stopped["stopped"] == process.process.pid
        assert process.process.wait(timeout=90) == 0
    finally:
        if process.process.poll() is None:
            process.kill9()
        docker_engine.reconcile(instance=instance.instance_id)
    assert json.loads(instance.status_file.read_text())["state"] == "stopped"
    assert (old_home / "repo.git" / "ouroboros" / "journal-root").read_text() == str(instance.journal.resolve())
    kinds = [record["kind"] for record in cli_json("log", "--home", str(old_home), "-n", "50")]
    assert kinds[0] == "genesis" and "agent-started" in kinds
    assert cli_json("verify-log", "--home", str(old_home))["ok"] is True
    assert not [line for line in process.seen if re.search(r"Traceback|error", line, re.IGNORECASE)]
