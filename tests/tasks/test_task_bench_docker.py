"""`supervisor task bench` for real: the demo's two tasks against generation 0 of a live instance, run
by the real supervisor in a scratch instance with the scripted model (real Docker, git, route, judge).
The scripted agent fixes the first and gets the second wrong: pass rate 1/2. The live instance's
queue, repository, decision log and project mirror stay exactly as they were."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from supervisor.cli import main
from supervisor.cli.demo import DEMO_MODEL, SAMPLE, write_demo_scenario
from supervisor.gate.gatekeeper import Gatekeeper
from supervisor.store.decision_kinds import DecisionKind
from supervisor.store.decision_log import DecisionLog
from supervisor.store.instance import Instance
from supervisor.store.instance_init import init_instance
from supervisor.store.tasks.bench_results import latest_reports
from supervisor.store.tasks.sqlite_queue import open_queue
from tests.tasks.bench_setup import add_sample_project, demo_set, live_state

pytestmark = pytest.mark.docker


def test_the_demo_tasks_pass_one_in_two_on_generation_zero(tmp_path: Path, docker_engine, agent_image) -> None:
    scenario = write_demo_scenario(tmp_path / "scenario.json", with_tasks=True)
    live = init_instance(tmp_path / "live", scenario, max_cycles=1, model=DEMO_MODEL)
    Gatekeeper(
        live.repo, engine=docker_engine, journal_root=live.journal, image=agent_image, instance=live.instance_id
    ).genesis()
    base = add_sample_project(live, tmp_path)
    set_file = demo_set(tmp_path / "set.jsonl", base)
    before = live_state(live)
    scratch_home = tmp_path / "kept"
    from supervisor.cli import task_bench

    report = task_bench.run_bench(live, 0, set_file, keep=True, scratch_home=scratch_home, progress=lambda _m: None)
    try:
        assert [(t.instance_id, t.outcome) for t in report.tasks] == [
            ("sample__median-1", "passed"),
            ("sample__mode-2", "failed"),
        ]
        assert report.tasks[1].regressions >= 1 and report.tasks[0].regressions == 0
        assert all(t.tokens > 0 for t in report.tasks)
        assert (report.attempted, report.passed, report.pass_rate, report.complete) == (2, 1, 0.5, True)
        assert report.tokens_per_passed_task == report.tokens == sum(t.tokens for t in report.tasks)
        # The live instance: untouched but for its report.
        assert live_state(live) == before
        assert latest_reports(live.home) == [report]
        # The scratch ran generation 0 throughout: every proposal dropped, main never moved.
        scratch = Instance(scratch_home)
        records = list(DecisionLog(scratch.state / "decisions.jsonl").records())
        kinds = [r.kind for r in records]
        assert DecisionKind.ACCEPTED not in kinds and DecisionKind.REJECTED not in kinds
        assert any(r.kind == DecisionKind.PROPOSAL_DROPPED and r.details.get("proposals") for r in records)
        judged = [r for r in records if r.kind == DecisionKind.TASK_JUDGED]
        assert [r.generation for r in judged] == [0, 0]
        assert [r.details["outcome"] for r in judged] == ["passed", "failed"]
        assert all(r.generation == 0 for r in records if r.kind == DecisionKind.AGENT_STARTED)
        queue = open_queue(scratch.tasks_db)
        try:
            assert [t.verdict.tokens if t.verdict else -1 for t in queue.find()] == [t.tokens for t in report.tasks]
        finally:
            queue.close()
    finally:
        docker_engine.reconcile(instance=Instance(scratch_home).instance_id)

    # The command itself, --json, on the same live instance; its scratch is removed afterwards.
    result = CliRunner().invoke(
        main, ["task", "bench", "--generation", "0", "--set", str(set_file), "--home", str(live.home), "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["pass_rate"] == 0.5 and data["scratch"] is None and data["generation"] == 0
    assert len(latest_reports(live.home)) == 2 and live_state(live) == before
    assert [task["outcome"] for task in data["tasks"]] == ["passed", "failed"]
    assert data["tasks"][0]["project"] == SAMPLE and "running 2 task(s) on generation 0" in result.stderr
