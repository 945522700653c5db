"""A real engine restart under a running supervisor with a gate in flight (runs last among the
system tests: `zz`).

Restarting the engine disturbs every other user of it, so this runs in CI (CI=true, where the
engine is ours: scripts/ensure-docker.sh started it) or when asked with OUROBOROS_ENGINE_RESTART=1,
and is skipped otherwise. How to restart is a command in OUROBOROS_ENGINE_RESTART_CMD (e.g.
`systemctl restart docker`); the default stops the dockerd named by /var/run/docker.pid (by that
pid only) and starts it again with scripts/ensure-docker.sh, as CI set it up.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from supervisor.store.protocol import Proposal
from tests.chaos.chaos_instance import chaos_instance, decisions_per_proposal, written_ids

from .conftest import SupervisorProcess, containers_of, gatekeeper_of, wait_until

pytestmark = pytest.mark.docker
ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RESTART = (
    "pid=$(cat /var/run/docker.pid) && kill $pid && while kill -0 $pid 2>/dev/null; do sleep 0.2; done; "
    f"bash {ROOT}/scripts/ensure-docker.sh"
)
SLOW_TEST = "import time\n\n\ndef test_main_is_fine():\n    time.sleep(6)\n"

ONE_PROPOSAL = r"""
import datetime, json, os, time, uuid
ws, out = os.environ["OUROBOROS_WORKSPACE"], os.environ["OUROBOROS_OUTBOX"]
marker = os.path.join(ws, "agent", "journal", "chaos-written.txt")
if not os.path.exists(marker):
    pid = uuid.uuid4().hex
    open(os.path.join(ws, "agent", "engine_note.txt"), "w").write(pid)
    message = {"version": 1, "kind": "proposal", "id": pid, "why": "Survive the engine.", "summary": "Note " + pid[:8],
               "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat()}
    open(os.path.join(out, pid + ".json.tmp"), "w").write(json.dumps(message))
    os.rename(os.path.join(out, pid + ".json.tmp"), os.path.join(out, pid + ".json"))
    open(marker, "a").write(pid + "\n")
while True:
    time.sleep(1)
"""


@pytest.mark.skipif(
    os.environ.get("OUROBOROS_ENGINE_RESTART") != "1" and os.environ.get("CI") != "true",
    reason="restarts the Docker engine: only in CI or with OUROBOROS_ENGINE_RESTART=1",
)
def test_an_engine_restart_during_a_gate_gets_a_real_verdict_and_one_agent_afterwards(
    tmp_path, docker_engine, agent_image
):
    instance = chaos_instance(tmp_path / "home", docker_engine, agent_image)
    config = instance.config_path.read_text()
    start = config.index("command = ")
    end = config.index("\n", start)
    instance.config_path.write_text(
        config[:start] + "command = " + json.dumps(["python", "-c", ONE_PROPOSAL]) + config[end:]
    )
    gk = gatekeeper_of(instance, docker_engine, agent_image)
    slow = gk.create_candidate()  # make main's own test slow, so the restart lands inside the gate
    Path(slow.worktree, "agent", "chaos_tests", "test_main.py").write_text(SLOW_TEST)
    verdict = gk.approve(
        gk.submit(
            slow,
            Proposal(
                version=1,
                kind="proposal",
                id=uuid.uuid4().hex,
                summary="Slow test",
                why="Give the restart time.",
                created_at=datetime.now(UTC),
            ),
        ).candidate
    )
    assert verdict.state == "accepted", verdict.reasons
    process = SupervisorProcess(instance)
    try:
        process.wait_for(r"gating proposal", timeout=120)
        # Restart while a gate container runs (main's slow test): the stopping engine kills it (143),
        # which must not read as the candidate's failure.
        assert wait_until(
            lambda: any(
                c.labels.get("io.ouroboros.role") == "gate" and c.status == "running"
                for c in containers_of(docker_engine, instance)
            ),
            120,
        )
        restart = os.environ.get("OUROBOROS_ENGINE_RESTART_CMD", DEFAULT_RESTART)
        subprocess.run(["bash", "-c", restart], check=True, timeout=120)
        process.wait_for(r"accepted: main is now", timeout=240)
        process.wait_for(r"agent running: generation", timeout=120)
        assert process.process.poll() is None
        assert (
            len([c for c in containers_of(docker_engine, instance) if c.labels.get("io.ouroboros.role") == "agent"])
            == 1
        )
        assert process.terminate() == 0
    finally:
        if process.process.poll() is None:
            process.kill9()
        docker_engine.reconcile(instance=instance.instance_id)
    proposal_id = written_ids(instance)[0]
    assert decisions_per_proposal(gk)[proposal_id] == ["accepted"]
    assert "rejected" not in [r.kind for r in gk.log.records()]
    assert any("engine" in line for line in process.seen), "\n".join(process.seen)
    assert gk.log.verify().ok
