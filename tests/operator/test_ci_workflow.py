"""docs/ci/github-actions.yml: valid for GitHub, and its `run:` steps work from a wheel, as non-root.

The steps run in order with bash, as uid 65534 in the Docker socket's group (a hosted runner's
user is not root), on a sample repository checked out the way actions/checkout leaves it (detached
HEAD, origin/main, an includeIf line in .git/config), with OUROBOROS_SPEC pointing at a wheel built
from this tree and OUROBOROS_BASE_IMAGE at the base already on this engine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

from tests.gate.repo_factory import git, make_repo, write_tree
from tests.operator.conftest import NOBODY, ROOT

WORKFLOW = ROOT / "docs" / "ci" / "github-actions.yml"
BIN = Path(sys.executable).parent


def _workflow() -> dict:
    yaml = pytest.importorskip("ruamel.yaml", reason="the test extra (check-jsonschema) is not installed")
    return yaml.YAML(typ="safe").load(WORKFLOW.read_text())


def test_workflow_is_valid_pinned_and_least_privileged() -> None:
    if not (BIN / "check-jsonschema").exists():
        pytest.skip("check-jsonschema (the test extra) is not installed, e.g. inside the gate's container")
    checked = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    flow = _workflow()
    assert {"push", "pull_request", "merge_group"} <= set(flow["on"])
    assert flow["permissions"] == {"contents": "read"}
    uses = [step["uses"] for job in flow["jobs"].values() for step in job["steps"] if "uses" in step]
    assert uses and all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", use) for use in uses), uses
    assert any("upload-artifact" in use for use in uses)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    return next(out.glob("ouroboros-*.whl"))


def _sample_checkout(root: Path) -> Path:
    """A non-bare clone as actions/checkout leaves it for a pull request."""
    repo = make_repo(root, bare=False)
    base = git(repo, "rev-parse", "HEAD")
    git(repo, "update-ref", "refs/remotes/origin/main", base)
    write_tree(
        repo,
        {"agent/tests/test_more.py": "from agent.calc import add\n\n\ndef test_more():\n    assert add(1, 1) == 2\n"},
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "one more test")
    git(repo, "checkout", "-q", "--detach", "HEAD")
    credentials = root / "git-credentials.config"
    credentials.write_text('[http "https://github.com/"]\n\textraheader = "AUTHORIZATION: basic ***"\n')
    git(repo, "config", f"includeIf.gitdir:{repo}/.git.path", str(credentials))
    return repo


def _run_steps(repo: Path, env: dict[str, str]) -> list[subprocess.CompletedProcess]:
    job = next(iter(_workflow()["jobs"].values()))
    docker_gid = os.stat("/var/run/docker.sock").st_gid
    done = []
    for step in job["steps"]:
        if "run" not in step:
            continue
        step_env = {key: env[key] for key in step.get("env", {})}  # `${{ }}` values: the test provides them
        command = [
            "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            f"--groups={docker_gid}",
            "bash",
            "-euo",
            "pipefail",
            "-c",
            step["run"],
        ]
        result = subprocess.run(command, cwd=repo, env={**env, **step_env}, capture_output=True, text=True, timeout=600)
        done.append(result)
        if result.returncode != 0:
            break
    return done


@pytest.mark.docker
def test_workflow_steps_gate_a_sample_repo_from_a_wheel_as_non_root(wheel: Path, docker_engine, agent_image) -> None:
    if os.geteuid() != 0 or not Path("/var/run/docker.sock").exists():
        pytest.skip("needs root (to become an unprivileged user) and the local Docker socket")
    from sandbox.images import OFFLINE_BASE

    work = Path(tempfile.mkdtemp(prefix="ouroboros-ci-", dir="/tmp"))
    try:
        os.chmod(work, 0o755)
        venv = work / "venv"
        subprocess.run([_interpreter_for_nobody(), "-m", "venv", "--without-pip", str(venv)], check=True)
        shutil.copytree(Path(sysconfig.get_paths()["purelib"]) / "pip", _site(venv) / "pip")
        # The wheel itself is installed by the workflow's own step; its dependencies come from here.
        (_site(venv) / "ouroboros-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        repo = _sample_checkout(work / "src")
        (work / "home").mkdir()
        wheel = Path(shutil.copy(wheel, work))
        subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(work)], check=True)
        env = {
            "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
            "HOME": str(work / "home"),
            "CI": "true",
            "OUROBOROS_SPEC": str(wheel),
            "OUROBOROS_BASE_IMAGE": OFFLINE_BASE,
            "PIP_NO_DEPS": "1",
            "PIP_NO_INDEX": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "GITHUB_EVENT_NAME": "pull_request",
            "GITHUB_BASE_REF": "main",
            "MERGE_GROUP_BASE_SHA": "",
        }
        steps = _run_steps(repo, env)
        assert len(steps) == 3 and all(s.returncode == 0 for s in steps), [(s.stdout, s.stderr) for s in steps]
        located = subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import sandbox.images as i; print(i.DOCKERFILE)"],
            capture_output=True,
            text=True,
            check=True,
            cwd=work,
        ).stdout
        assert str(venv) in located and "image_context" in located  # the packaged copy, not this checkout
        report = (repo / "gate-report.xml").read_text()
        assert 'name="verdict"' in report and "test_more" in report and "<failure" not in report
        assert "gate PASS" in steps[-1].stdout
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _interpreter_for_nobody() -> str:
    """This Python if an unprivileged user can reach it, else the system's of the same minor version."""
    probe = subprocess.run(
        [
            "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            "bash",
            "-c",
            f"test -x {sys._base_executable}",
        ]
    )
    if probe.returncode == 0:
        return sys._base_executable
    system = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    if not system.exists():
        pytest.skip(f"no Python {sys.version_info.major}.{sys.version_info.minor} an unprivileged user can run")
    return str(system)


def _site(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))
