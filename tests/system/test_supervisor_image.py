"""Dockerfile.supervisor: built with no index inside, runs `supervisor start` as non-root against the
host's engine, reports healthy through `status`, and `docker stop` stops the agent too."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from supervisor.gate.gatekeeper import Gatekeeper
from supervisor.store.instance_init import init_instance, package_dir
from tests.system.conftest import containers_of, wait_until

pytestmark = pytest.mark.docker
ROOT = Path(__file__).resolve().parents[2]
TAG = "ouroboros-supervisor:test"


@pytest.fixture(scope="module")
def supervisor_image(docker_engine) -> str:
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-supervisor-image.sh"), TAG],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHON": os.environ.get("PYTHON", str(ROOT / ".venv/bin/python"))},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return TAG


def test_supervisor_image_runs_non_root_and_docker_stop_stops_the_agent(supervisor_image, docker_engine, agent_image):
    if not Path("/var/run/docker.sock").exists() or os.geteuid() != 0:
        pytest.skip("needs root and the local Docker socket to mount into the supervisor container")
    work = Path(tempfile.mkdtemp(prefix="ouroboros-sv-", dir="/tmp"))
    name = f"ouroboros-sv-test-{work.name[-8:]}"
    instance = None
    try:
        os.chmod(work, 0o755)
        scenario = work / "idle_loop.json"
        shutil.copy(package_dir("scripted_model") / "scenarios" / "idle_loop.json", scenario)
        instance = init_instance(work / "home", scenario, model="claude-sonnet-5-5")
        Gatekeeper(
            instance.repo,
            engine=docker_engine,
            journal_root=instance.journal,
            image=agent_image,
            instance=instance.instance_id,
        ).genesis()
        subprocess.run(["chown", "-R", "10001:10001", str(work)], check=True)
        socket_gid = str(os.stat("/var/run/docker.sock").st_gid)
        # --network none: with the scripted model the supervisor needs no network (the real API would).
        subprocess.run(
            [
                "docker",
                "run",
                "-d",
                "--name",
                name,
                "--network",
                "none",
                "--group-add",
                socket_gid,
                "-v",
                "/var/run/docker.sock:/var/run/docker.sock",
                "-v",
                f"{work}:{work}",
                "-e",
                f"OUROBOROS_HOME={instance.home}",
                supervisor_image,
                "start",
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        assert wait_until(lambda: len(containers_of(docker_engine, instance)) == 1, 120), _logs(name)
        user = subprocess.run(["docker", "exec", name, "id", "-u"], capture_output=True, text=True).stdout.strip()
        assert user == "10001"
        health = subprocess.run(["docker", "exec", name, "supervisor", "status"], capture_output=True, text=True)
        assert health.returncode == 0 and "state       running" in health.stdout, health.stdout + health.stderr
        subprocess.run(["docker", "stop", "-t", "120", name], check=True, capture_output=True)
        code = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.ExitCode}}", name], capture_output=True, text=True
        ).stdout.strip()
        assert code == "0", _logs(name)
        assert containers_of(docker_engine, instance) == []
        healthcheck = subprocess.run(
            ["docker", "image", "inspect", "-f", "{{json .Config.Healthcheck.Test}}", supervisor_image],
            capture_output=True,
            text=True,
        ).stdout
        assert "status" in healthcheck
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        if instance is not None:
            docker_engine.reconcile(instance=instance.instance_id)
        shutil.rmtree(work, ignore_errors=True)


def _logs(name: str) -> str:
    return subprocess.run(["docker", "logs", "--tail", "40", name], capture_output=True, text=True).stderr
