"""Racing merges and crash safety, with real containers: main only ever holds gated commits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from supervisor.gate.gatekeeper import Gatekeeper
from tests.gate.repo_factory import proposal, write_tree

pytestmark = pytest.mark.docker

FEATURE = "def feature_{n}():\n    return {n}\n"
FEATURE_TEST = (
    "from agent.feature_{n} import feature_{n}\n\n\ndef test_feature_{n}():\n    assert feature_{n}() == {n}\n"
)


def _files(n: int) -> dict[str, str]:
    return {f"agent/feature_{n}.py": FEATURE.format(n=n), f"agent/tests/test_feature_{n}.py": FEATURE_TEST.format(n=n)}


def test_two_racing_merges_one_wins_the_other_is_regated(keeper_factory) -> None:
    keeper = keeper_factory()
    keeper.genesis()
    genesis = keeper.main()
    candidates = [keeper.create_candidate() for _ in range(2)]
    for n, candidate in enumerate(candidates):
        write_tree(Path(candidate.worktree), _files(n))
    verdicts = [None, None]
    barrier = threading.Barrier(2)

    def submit(i: int) -> None:
        barrier.wait()
        verdicts[i] = keeper.submit(candidates[i], proposal(f"feature {i}"))

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert {v.state for v in verdicts} == {"accepted"}
    first, second = sorted(verdicts, key=lambda v: v.generation)
    assert (first.generation, second.generation) == (1, 2)
    # The loser was rebased onto the winner and gated again: never merged untested.
    assert keeper.git.parents(first.commit) == [genesis]
    assert keeper.git.parents(second.commit) == [first.commit]
    assert keeper.main() == second.commit
    record = keeper.store.load(second.candidate)
    assert record.gate and record.gate.commit == second.commit
    assert set(record.gate.test_ids) >= {
        "agent.tests.test_feature_0::test_feature_0",
        "agent.tests.test_feature_1::test_feature_1",
    }


SUBMIT_SCRIPT = """
import sys
from pathlib import Path
from sandbox.engine import DockerEngine
from supervisor.gate.gatekeeper import Gatekeeper
from tests.gate.repo_factory import proposal
keeper = Gatekeeper(Path(sys.argv[1]), engine=DockerEngine.connect(), image=sys.argv[3], instance=sys.argv[4])
keeper.submit(sys.argv[2], proposal("killed mid-gate"))
"""


def test_kill_9_mid_gate_then_recover_converges(keeper_factory, docker_engine, agent_image, sandbox_instance) -> None:
    keeper = keeper_factory(deadline=60)
    keeper.genesis()
    candidate = keeper.create_candidate()
    write_tree(
        Path(candidate.worktree),
        {**_files(7), "agent/tests/test_slow.py": "import time\n\n\ndef test_slow():\n    time.sleep(3)\n"},
    )
    stale = keeper.create_candidate()  # an agent that never proposed: its worktree is stale after a crash
    process = subprocess.Popen(
        [sys.executable, "-c", SUBMIT_SCRIPT, str(keeper.common), candidate.id, agent_image, sandbox_instance],
        cwd=Path(__file__).resolve().parents[2],
    )
    deadline = time.monotonic() + 60
    while keeper.store.load(candidate.id).state != "gating" and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # the gate container is running now
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert keeper.store.load(candidate.id).state == "gating"
    docker_engine.reconcile(instance=sandbox_instance)  # what `supervisor start` does first after a crash
    actions = Gatekeeper(keeper.common, engine=docker_engine, image=agent_image, instance=sandbox_instance).recover()
    assert f"resumed {candidate.id}: accepted" in actions and f"abandoned {stale.id}" in actions
    assert keeper.main() == keeper.store.load(candidate.id).commit == keeper.generations()[1]
    assert list(keeper.worktrees.iterdir()) == [] and list(keeper.scratch.iterdir()) == []
    assert keeper.git.refs("refs/heads/ouroboros") == {}
    assert keeper.git.out("worktree", "list", "--porcelain").count("worktree ") <= 1
    # Recovering again changes nothing: every step is idempotent.
    assert Gatekeeper(keeper.common, engine=docker_engine, image=agent_image).recover() == []
    assert [r.kind for r in keeper.log.records()].count("accepted") == 1


def test_crash_after_the_swap_or_before_the_commit_converges(keeper_factory, docker_engine, agent_image) -> None:
    from supervisor.base.git_ops import MAIN_REF

    keeper = keeper_factory()
    keeper.genesis()
    # Crash 1: main was swapped to the gated commit, then the supervisor died before tagging.
    swapped = keeper.create_candidate()
    write_tree(Path(swapped.worktree), _files(1))
    record = keeper.store.load(swapped.id)
    record.proposal, record.state = proposal("swapped then crashed"), "committing"
    keeper._commit(record)
    keeper._gate(record)
    assert record.state == "merging"
    keeper.git.update_ref(MAIN_REF, record.commit, keeper.main())
    # Crash 2: a proposal arrived and was saved, but nothing was committed yet.
    saved = keeper.create_candidate()
    write_tree(Path(saved.worktree), _files(2))
    second = keeper.store.load(saved.id)
    second.proposal, second.state = proposal("saved then crashed"), "committing"
    keeper.store.save(second)

    actions = Gatekeeper(keeper.common, engine=docker_engine, image=agent_image).recover()
    assert sorted(actions) == [f"resumed {swapped.id}: accepted", f"resumed {saved.id}: accepted"]
    first, later = keeper.store.load(swapped.id), keeper.store.load(saved.id)
    assert keeper.generations() == {0: keeper.generations()[0], 1: first.commit, 2: later.commit}
    assert keeper.git.parents(later.commit) == [first.commit] and keeper.main() == later.commit
    assert [r.kind for r in keeper.log.records()] == ["genesis", "accepted", "accepted"]
    assert keeper.log.verify().ok and list(keeper.worktrees.iterdir()) == []
