"""Every `supervisor ...` line in the bash blocks of README.md and docs/operations.md, run in order
against a fresh instance (the scripted model instead of a key; `start` in the background)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from supervisor.store.instance_init import package_dir

pytestmark = pytest.mark.docker
ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER = "/srv/ouroboros"
ALLOWED = {"rollback": {0, 1}}  # with only generation 0 there is nothing earlier to roll back to: a message


def doc_commands(doc: Path) -> list[str]:
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line.startswith("supervisor "):
                commands.append(re.sub(r"\s+#\s.*$", "", line).strip())
    return commands


def _run(args: list[str], home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("OUROBOROS_HOME", "ANTHROPIC_API_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "supervisor", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=tmp_cwd(home),
    )


def tmp_cwd(home: Path) -> Path:
    home.parent.mkdir(parents=True, exist_ok=True)  # the directory an operator would run from
    return home.parent


def _wait_running(home: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _run(["status", "--home", str(home)], home).returncode == 0:
            return
        time.sleep(0.5)
    raise AssertionError("the supervisor did not come up")


@pytest.mark.parametrize("doc", ["README.md", "docs/operations.md"])
def test_every_documented_command_runs(doc: str, tmp_path: Path, docker_engine, agent_image) -> None:
    commands = doc_commands(ROOT / doc)
    assert any(c.startswith("supervisor init") for c in commands) and len(commands) >= 5
    home = tmp_path / "srv" / "ouroboros"
    scenario = package_dir("scripted_model") / "scenarios" / "idle_loop.json"
    background: list[subprocess.Popen] = []
    servers: list[subprocess.Popen] = []
    instance_id = None
    try:
        for command in commands:
            args = shlex.split(command.replace(PLACEHOLDER, str(home)))[1:]
            verb = args[0]
            if verb == "init":
                args += ["--scenario", str(scenario)]  # no API key here: the scripted model serves the agent
            if verb == "start":
                env = {k: v for k, v in os.environ.items() if k not in ("OUROBOROS_HOME", "ANTHROPIC_API_KEY")}
                background.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "supervisor", *args],
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
                _wait_running(home)
                continue
            if verb == "console":  # serves until stopped: it must come up and keep serving
                server = subprocess.Popen(
                    [sys.executable, "-m", "supervisor", *args, "--bind", "127.0.0.1:0"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                servers.append(server)
                time.sleep(3)
                assert server.poll() is None, f"`{command}` exited: {server.stderr.read() if server.stderr else ''}"
                continue
            done = _run(args, home)
            running = any(p.poll() is None for p in background)
            allowed = ALLOWED.get(verb, {0} if verb != "status" or running else {3})
            assert done.returncode in allowed, f"`{command}` exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            assert "Traceback" not in done.stdout + done.stderr, command
            if verb == "init":
                assert "generation 0 passed the gate" in done.stdout
                from supervisor.store.instance import Instance

                instance_id = Instance(home).instance_id
    finally:
        for process in servers + background:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=120)
        if instance_id:
            docker_engine.reconcile(instance=instance_id)
