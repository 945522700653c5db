"""Review: a restart clears the acceptance folders a killed gate left before it resumes any gate.

Acceptance lays its scenario folders out in the worktree area (`worktrees/acceptance-*`), which is
capped: a gate killed mid-acceptance can leave it full of what the candidate's agents wrote. The
gate that `recover()` resumes must not run its own acceptance in that leftover: it would meet a
full area that no run of its own filled.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.gate.gatekeeper import Gatekeeper
from tests.gate.repo_factory import proposal, write_tree


class _Observed(Exception):
    """Raised by the spy to stop the resumed gate once it has looked at the work area."""


def test_recover_clears_leftover_acceptance_folders_before_it_resumes_a_gate(bare_repo: Path) -> None:
    gatekeeper = Gatekeeper(bare_repo, engine=None, image="never-used")
    candidate = gatekeeper.create_candidate()
    write_tree(Path(candidate.worktree), {"agent/feature.py": "X = 1\n"})
    record = gatekeeper.store.load(candidate.id)
    record.proposal, record.state = proposal("killed mid-acceptance"), "committing"
    gatekeeper._commit(record)
    assert gatekeeper.store.load(candidate.id).state == "gating"
    leftover = gatekeeper.worktrees / "acceptance-0123456789ab"  # a kill during its stage left it behind
    (leftover / "acc-word-count-01234567" / "workspace").mkdir(parents=True)
    (leftover / "acc-word-count-01234567" / "workspace" / "ballast.bin").write_bytes(b"x" * 4096)

    restarted = Gatekeeper(bare_repo, engine=None, image="never-used")
    seen: list[bool] = []

    def judge(*args, **kwargs):
        seen.append(leftover.exists())
        raise _Observed

    restarted.gate_runner.judge = judge  # type: ignore[method-assign]
    with pytest.raises(_Observed):
        restarted.recover()
    assert seen == [False], "the resumed gate ran while the killed gate's acceptance folders filled the area"
