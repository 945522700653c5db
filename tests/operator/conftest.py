"""Fixtures for the operator's view: instances made by the real `init` code, the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from supervisor.cli import main
from supervisor.store.instance import Instance
from supervisor.store.instance_init import init_instance

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534


@pytest.fixture
def instance(tmp_path: Path) -> Instance:
    """An instance as `supervisor init --no-gate` leaves it (no Docker needed)."""
    return init_instance(tmp_path / "home")


def cli(*args: str, code: int | None = 0) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    if code is not None:
        assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def cli_json(*args: str, code: int = 0):
    return json.loads(cli(*args, "--json", code=code)[1])


def as_nobody(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`supervisor ARGS` in a subprocess as uid/gid 65534 with no supplementary groups (needs root)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user")
    command = [
        "setpriv",
        f"--reuid={NOBODY}",
        f"--regid={NOBODY}",
        "--clear-groups",
        sys.executable,
        "-m",
        "supervisor",
        *args,
    ]
    full_env = {"PATH": os.environ["PATH"], "HOME": "/tmp", **(env or {})}
    return subprocess.run(command, capture_output=True, text=True, env=full_env, cwd="/tmp", timeout=60)
