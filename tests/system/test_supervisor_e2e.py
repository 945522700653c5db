"""The running system end to end: real Docker, real git, the real SDK against the scripted model."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from supervisor.base.git_ops import MAIN_REF
from supervisor.cli.demo import demo_tasks, run_demo, task_patch
from supervisor.cli.log_lines import lines_to
from supervisor.loop.event_loop import Supervisor
from supervisor.store.protocol import Proposal

from .conftest import containers_of, gatekeeper_of, journal_by_file, journal_entries, scenario

pytestmark = pytest.mark.docker


def test_demo_accepts_one_proposal_and_rejects_the_breaking_one(tmp_path, docker_engine, agent_image):
    instance, verdicts, task_ids = run_demo(tmp_path / "demo", progress=lambda message: None)
    assert [v.state for v in verdicts] == ["accepted", "rejected"]
    # The sample project's two tasks: the fix passes with its fail-to-pass test, the hasty change
    # fails with the regression it made; both are branches in the project's mirror.
    fixed, hasty = demo_tasks(instance, task_ids)
    assert (fixed.state, fixed.fail_to_pass_passed) == ("passed", ["tests/test_stats.py::test_median_of_even_length"])
    assert hasty.state == "failed" and hasty.regressions == ["tests.test_stats::test_mode"]
    assert hasty.fail_to_pass_passed == ["tests/test_stats.py::test_mode_of_a_tie_is_the_smallest"]
    assert fixed.branch and hasty.branch and fixed.branch != hasty.branch
    assert "(ordered[middle - 1] + ordered[middle]) / 2" in task_patch(instance, fixed.id)
    judged = [r for r in gatekeeper_of(instance, docker_engine, agent_image).log.records() if r.kind == "task-judged"]
    assert [(r.details["task"], r.details["outcome"], r.generation) for r in judged] == [
        (fixed.id, "passed", 0),
        (hasty.id, "failed", 1),
    ]
    gk = gatekeeper_of(instance, docker_engine, agent_image)
    generations = gk.generations()
    assert sorted(generations) == [0, 1]
    assert gk.main() == generations[1] == verdicts[0].commit
    # The accepted generation really contains the tool the agent wrote for itself, and its test.
    tree = {entry.path for entry in gk.git.ls_tree(gk.main())}
    added = {p for p in tree if p.startswith("agent/")} - {e.path for e in gk.git.ls_tree(generations[0])}
    assert any(p.startswith("agent/tools/") for p in added) and any(p.startswith("agent/tests/") for p in added)
    # The rejected one is kept for inspection, with the failing test named in the agent's journal.
    rejected = gk.git.refs("refs/ouroboros/rejected")
    assert len(rejected) == 1
    notes = "\n".join(p.read_text() for p in instance.journal.rglob("notes.md"))
    assert "gate-rejected" in notes and "test_word_count" in notes
    assert gk.log.verify().ok
    assert containers_of(docker_engine, instance) == []


def test_a_generation_that_crashes_on_start_is_rolled_back(make_instance, docker_engine, agent_image):
    # Probation defaults (5 crashes in 10 s). Acceptance would reject this generation before it
    # reached main (it runs the entry point); probation is for crashes no scenario provokes.
    instance = make_instance(scenario("idle_loop.json"), extra_config="[acceptance]\nenabled = false\n")
    gk = gatekeeper_of(instance, docker_engine, agent_image)
    good = gk.main()
    candidate = gk.create_candidate()
    # Passes the agent's tests (they never start `python -m agent`), crashes the real entry point.
    Path(candidate.worktree, "agent", "__main__.py").write_text("raise SystemExit(3)\n")
    verdict = gk.submit(
        candidate,
        Proposal(
            version=1,
            kind="proposal",
            id=uuid.uuid4().hex,
            summary="Start faster",
            why="A change whose tests pass but whose entry point crashes.",
            created_at=datetime.now(UTC),
        ),
    )
    assert verdict.state == "accepted", verdict.reasons
    broken = gk.main()

    supervisor = Supervisor(instance, docker_engine, agent_image, stop_when=lambda s: s.rollbacks >= 1)
    with lines_to(print):
        assert supervisor.run() == 0

    assert gk.main() == good
    assert gk.git.refs("refs/ouroboros/rolled-back") == {"refs/ouroboros/rolled-back/1": broken}
    kinds = [record.kind for record in gk.log.records()]
    assert "rollback" in kinds
    assert any("probation-rollback" in heading for heading in journal_entries(instance))
    assert containers_of(docker_engine, instance) == []


def test_sigterm_stops_the_agent_and_leaves_nothing_running(make_instance, start_supervisor, docker_engine):
    instance = make_instance(scenario("idle_loop.json"))
    process = start_supervisor(instance)
    process.wait_for(r"agent running: generation 0")
    assert len(containers_of(docker_engine, instance)) == 1
    assert process.terminate() == 0
    assert containers_of(docker_engine, instance) == []
    assert not instance.pid_file.exists()
    assert not (instance.run_dir / "llm" / "llm.sock").exists()
    assert json.loads(instance.status_file.read_text())["state"] == "stopped"


@pytest.mark.parametrize("boundary", ["agent running", "gating proposal", "accepted: main is now"])
def test_kill_9_at_a_step_boundary_then_restart_converges(
    boundary, make_instance, start_supervisor, docker_engine, agent_image
):
    instance = make_instance(scenario("demo.json"), max_cycles=1)
    gk = gatekeeper_of(instance, docker_engine, agent_image)
    first = start_supervisor(instance)
    first.wait_for(boundary)
    before = journal_by_file(instance)
    first.kill9()

    second = start_supervisor(instance)
    second.wait_for(r"agent running: generation")
    assert second.terminate() == 0

    assert containers_of(docker_engine, instance) == []
    main = gk.git.ref_value(MAIN_REF)
    assert main in set(gk.generations().values())  # main only ever points at a gated generation
    after_by_file = journal_by_file(instance)
    for name, entries in before.items():  # nothing written before the kill was lost
        assert after_by_file[name][: len(entries)] == entries, name
    after = journal_entries(instance)
    assert gk.log.verify().ok
    if boundary != "agent running":
        # The proposal was gated exactly once, whichever side of the kill the verdict fell on.
        accepted = [r for r in gk.log.records() if r.kind == "accepted"]
        assert len(accepted) == 1 and main == accepted[0].commit
        assert sum("gate-accepted" in h for h in after) == 1
    leftovers = [p.name for p in (gk.state_dir / "worktrees").iterdir()]
    assert len(leftovers) <= 1  # at most the candidate of the run that was stopped cleanly


def test_hostile_outbox_and_journal_entries_do_not_stop_the_supervisor(
    make_instance, start_supervisor, docker_engine, agent_image, tmp_path
):
    instance = make_instance(scenario("idle_loop.json"))
    outbox = instance.run_dir / "outbox"
    outbox.mkdir(parents=True)
    (outbox / "evil.json").mkdir()  # a folder named like a proposal
    (outbox / "junk.json").write_text("{not json")
    target = tmp_path / "outside"
    target.mkdir()
    year = datetime.now(UTC).strftime("%Y")
    (instance.journal / year).symlink_to(target)  # journal writes must not follow it
    process = start_supervisor(instance)
    process.wait_for(r"agent running: generation 0")
    assert process.terminate() == 0
    assert list(target.iterdir()) == []
    assert not (outbox / "evil.json").exists() and not (outbox / "junk.json").exists()
    kinds = [record.kind for record in gatekeeper_of(instance, docker_engine, agent_image).log.records()]
    assert "proposal-refused" in kinds and "journal-refused" in kinds
