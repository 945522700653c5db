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


def test_two_racing_merges_one_wins_the_other_is_regated(gatekeeper_factory) -> None:
    gatekeeper = gatekeeper_factory()
    gatekeeper.genesis()
    genesis = gatekeeper.main()
    candidates = [gatekeeper.create_candidate() for _ in range(2)]
    for n, candidate in enumerate(candidates):
        write_tree(Path(candidate.worktree), _files(n))
    verdicts = [None, None]
    barrier = threading.Barrier(2)

    def submit(i: int) -> None:
        barrier.wait()
        verdicts[i] = gatekeeper.submit(candidates[i], proposal(f"feature {i}"))

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert {v.state for v in verdicts} == {"accepted"}
    first, second = sorted(verdicts, key=lambda v: v.generation)
    assert (first.generation, second.generation) == (1, 2)
    # The loser was rebased onto the winner and gated again: never merged untested.
    assert gatekeeper.git.parents(first.commit) == [genesis]
    assert gatekeeper.git.parents(second.commit) == [first.commit]
    assert gatekeeper.main() == second.commit
    record = gatekeeper.store.load(second.candidate)
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
gatekeeper = Gatekeeper(Path(sys.argv[1]), engine=DockerEngine.connect(), image=sys.argv[3], instance=sys.argv[4])
gatekeeper.submit(sys.argv[2], proposal("killed mid-gate"))
"""


def test_kill_9_mid_gate_then_recover_converges(
    gatekeeper_factory, docker_engine, agent_image, sandbox_instance
) -> None:
    gatekeeper = gatekeeper_factory(deadline=60)
    gatekeeper.genesis()
    candidate = gatekeeper.create_candidate()
    write_tree(
        Path(candidate.worktree),
        {**_files(7), "agent/tests/test_slow.py": "import time\n\n\ndef test_slow():\n    time.sleep(3)\n"},
    )
    stale = gatekeeper.create_candidate()  # an agent that never proposed: its worktree is stale after a crash
    process = subprocess.Popen(
        [sys.executable, "-c", SUBMIT_SCRIPT, str(gatekeeper.common), candidate.id, agent_image, sandbox_instance],
        cwd=Path(__file__).resolve().parents[2],
    )
    deadline = time.monotonic() + 60
    while gatekeeper.store.load(candidate.id).state != "gating" and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # the gate container is running now
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert gatekeeper.store.load(candidate.id).state == "gating"
    docker_engine.reconcile(instance=sandbox_instance)  # what `supervisor start` does first after a crash
    actions = Gatekeeper(
        gatekeeper.common, engine=docker_engine, image=agent_image, instance=sandbox_instance
    ).recover()
    assert f"resumed {candidate.id}: accepted" in actions and f"abandoned {stale.id}" in actions
    assert gatekeeper.main() == gatekeeper.store.load(candidate.id).commit == gatekeeper.generations()[1]
    assert list(gatekeeper.worktrees.iterdir()) == [] and list(gatekeeper.scratch.iterdir()) == []
    assert gatekeeper.git.refs("refs/heads/ouroboros") == {}
    assert gatekeeper.git.out("worktree", "list", "--porcelain").count("worktree ") <= 1
    # Recovering again changes nothing: every step is idempotent.
    assert Gatekeeper(gatekeeper.common, engine=docker_engine, image=agent_image).recover() == []
    assert [r.kind for r in gatekeeper.log.records()].count("accepted") == 1


def test_crash_after_the_swap_or_before_the_commit_converges(gatekeeper_factory, docker_engine, agent_image) -> None:
    from supervisor.base.git_ops import MAIN_REF

    gatekeeper = gatekeeper_factory()
    gatekeeper.genesis()
    # Crash 1: main was swapped to the gated commit, then the supervisor died before tagging.
    swapped = gatekeeper.create_candidate()
    write_tree(Path(swapped.worktree), _files(1))
    record = gatekeeper.store.load(swapped.id)
    record.proposal, record.state = proposal("swapped then crashed"), "committing"
    gatekeeper._commit(record)
    gatekeeper._gate(record)
    assert record.state == "merging"
    gatekeeper.git.update_ref(MAIN_REF, record.commit, gatekeeper.main())
    # Crash 2: a proposal arrived and was saved, but nothing was committed yet.
    saved = gatekeeper.create_candidate()
    write_tree(Path(saved.worktree), _files(2))
    second = gatekeeper.store.load(saved.id)
    second.proposal, second.state = proposal("saved then crashed"), "committing"
    gatekeeper.store.save(second)

    actions = Gatekeeper(gatekeeper.common, engine=docker_engine, image=agent_image).recover()
    assert sorted(actions) == [f"resumed {swapped.id}: accepted", f"resumed {saved.id}: accepted"]
    first, later = gatekeeper.store.load(swapped.id), gatekeeper.store.load(saved.id)
    assert gatekeeper.generations() == {0: gatekeeper.generations()[0], 1: first.commit, 2: later.commit}
    assert gatekeeper.git.parents(later.commit) == [first.commit] and gatekeeper.main() == later.commit
    assert [r.kind for r in gatekeeper.log.records()] == ["genesis", "accepted", "accepted"]
    assert gatekeeper.log.verify().ok and list(gatekeeper.worktrees.iterdir()) == []
