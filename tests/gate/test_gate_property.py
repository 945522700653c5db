"""Property: over random sequences of passing, failing, hanging and test-deleting proposals, main
only ever points at commits that passed the gate (genesis or an accepted, gated candidate)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor.gate.gatekeeper import Gatekeeper
from tests.gate.repo_factory import make_repo, proposal, write_tree

pytestmark = pytest.mark.docker

KINDS = ["pass", "fail", "hang", "delete-test"]


def _apply(kind: str, step: int, workspace: Path) -> None:
    if kind == "pass":
        write_tree(
            workspace,
            {
                f"agent/f{step}.py": f"V = {step}\n",
                f"agent/tests/test_f{step}.py": f"from agent.f{step} import V\n\n\n"
                f"def test_v():\n    assert V == {step}\n",
            },
        )
    elif kind == "fail":
        write_tree(workspace, {"agent/calc.py": "def add(a, b):\n    return a * b\n"})
    elif kind == "hang":
        write_tree(
            workspace, {f"agent/tests/test_hang{step}.py": "import time\n\n\ndef test_hang():\n    time.sleep(300)\n"}
        )
    else:
        (workspace / "agent/tests/test_calc.py").unlink()


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=st.lists(st.sampled_from(KINDS), min_size=3, max_size=6))
def test_main_only_points_at_gated_commits(
    kinds, tmp_path_factory, docker_engine, agent_image, sandbox_instance
) -> None:
    repo = make_repo(tmp_path_factory.mktemp("prop"), deadline=3)
    gatekeeper = Gatekeeper(repo, engine=docker_engine, image=agent_image, instance=sandbox_instance)
    gatekeeper.genesis()
    gated = {gatekeeper.main()}
    for step, kind in enumerate(kinds):
        candidate = gatekeeper.create_candidate()
        _apply(kind, step, Path(candidate.worktree))
        verdict = gatekeeper.submit(candidate, proposal(f"{kind} {step}"))
        assert verdict.state == ("accepted" if kind == "pass" else "rejected"), (kind, verdict.reasons)
        record = gatekeeper.store.load(candidate.id)
        if verdict.state == "accepted":
            assert record.gate and record.gate.passed and record.gate.commit == verdict.commit
            gated.add(verdict.commit)
        main = gatekeeper.main()
        assert main in gated
        assert gatekeeper.generation_of(main) is not None
    assert gatekeeper.log.verify().ok
