"""A candidate cannot fill the host's disk from acceptance: the folders its agent writes in during
held-out scenarios lie in the gatekeeper's size-capped worktree area, not on the host's filesystem."""

from __future__ import annotations

import os

import pytest

from supervisor.gate.acceptance.models import ScenarioOutcome
from supervisor.gate.gatekeeper import Gatekeeper
from supervisor.loop import diskcap
from tests.acceptance.candidates import HOOK, Workbench

pytestmark = pytest.mark.docker

CAP_MB = 64
# Runs whenever the candidate's agent imports its tools: in acceptance, writes ballast into its
# workspace and exits 3 the moment the disk says no; the gate's test containers have no /workspace.
BALLAST = """
import os as _os, sys as _sys
if _os.path.isdir(_os.environ.get("OUROBOROS_WORKSPACE", "/nonexistent")):
    _written = 0
    try:
        with open(_os.path.join(_os.environ["OUROBOROS_WORKSPACE"], "ballast.bin"), "wb") as _f:
            while _written < 512 << 20:
                _f.write(b"x" * (1 << 20))
                _f.flush()
                _written += 1 << 20
    except OSError:
        print("ballast stopped at", _written >> 20, "MB", flush=True)
        _sys.exit(3)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="capping a folder needs a loop mount (root)")
def test_a_candidate_filling_its_acceptance_workspace_meets_the_cap_not_the_hosts_disk(
    tmp_path, docker_engine, agent_image
):
    bench = Workbench(tmp_path, only=("word-count",))
    gatekeeper = Gatekeeper(
        bench.instance.repo, engine=docker_engine, image=agent_image, instance=bench.instance.instance_id
    )
    area = diskcap.CappedArea("workspace", gatekeeper.worktrees, CAP_MB)
    assert diskcap.cap_areas([area], tmp_path / "disk", "loop")
    try:
        commit = bench.candidate("ballast", [("agent/tools/word_count.py", (HOOK, BALLAST + HOOK))])
        result = gatekeeper.gate_rev(commit, base="main")
    finally:
        diskcap.release([area])
        docker_engine.reconcile(instance=bench.instance.instance_id)
    report = result.acceptance
    assert report is not None, result.reasons  # the test passes ran clean: acceptance was reached
    scenario = report.scenarios[0]
    # Stopped by the cap (exit 3), not after writing 512 MB onto the host's own filesystem.
    assert scenario.outcome is ScenarioOutcome.FAILED and scenario.exit_code == 3, scenario
    assert not result.passed
