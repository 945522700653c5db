"""`supervisor task bench` before any container: the scratch instance (pinned, borrowing, never
writing the live one), its config, and every error that must stop the bench before it starts."""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from supervisor.base.errors import ConfigError
from supervisor.base.git_ops import GEN_TAG_PREFIX, Git
from supervisor.cli import main
from supervisor.cli.bench_cmds import render
from supervisor.cli.demo import SAMPLE
from supervisor.store.instance import Instance, InstanceConfig
from supervisor.store.instance_init import init_instance
from supervisor.store.projects import ProjectRegistry
from supervisor.store.scratch_instance import config_toml, make_scratch
from supervisor.store.tasks.bench_results import BenchReport, BenchTask, headline, latest_reports, save_report
from tests.tasks.bench_setup import add_sample_project, demo_set, live_state, tag_generations


@pytest.fixture
def live(tmp_path: Path) -> Instance:
    instance = init_instance(tmp_path / "live")
    tag_generations(instance, 3)
    return instance


def test_the_scratch_runs_one_generation_and_borrows_without_writing(live: Instance, tmp_path: Path) -> None:
    add_sample_project(live, tmp_path)
    before = live_state(live)
    commits = [Git(live.repo).ref_value(f"{GEN_TAG_PREFIX}{n}") for n in range(3)]
    scratch = make_scratch(tmp_path / "scratch", live, 1, [SAMPLE])
    git = Git(scratch.repo)
    assert git.ref_value("refs/heads/main") == commits[1]
    # Generations up to N only: the agent's /history must not show what later generations did.
    assert git.refs(GEN_TAG_PREFIX) == {f"{GEN_TAG_PREFIX}0": commits[0], f"{GEN_TAG_PREFIX}1": commits[1]}
    assert (scratch.repo / "objects" / "info" / "alternates").read_text().strip() == str(live.repo / "objects")
    assert not [p for p in (scratch.repo / "objects").rglob("*") if p.is_file() and "info" not in p.parts]
    assert git.message(commits[1]).startswith("Generation 1")  # read through the borrowed objects
    # The project: the live mirror's refs, its objects borrowed, its config.
    scratch_mirror, live_mirror = ProjectRegistry(scratch.projects).mirror(SAMPLE), ProjectRegistry(live.projects)
    assert Git(scratch_mirror).refs() == Git(live_mirror.mirror(SAMPLE)).refs()
    assert ProjectRegistry(scratch.projects).get(SAMPLE) == live_mirror.get(SAMPLE)
    assert not (scratch_mirror / "hooks").exists() or not any((scratch_mirror / "hooks").iterdir())
    # A commit made in the scratch (as a task result is) lands in the scratch only.
    head = Git(scratch_mirror).ref_value("refs/heads/main")
    assert head is not None
    result = Git(scratch_mirror).commit_tree(Git(scratch_mirror).tree_of(head), [head], "a task result\n")
    Git(scratch_mirror).update_ref("refs/heads/task-1-1", result, "0" * 40)
    assert Git(live_mirror.mirror(SAMPLE)).rev_parse(result) is None
    assert live_state(live) == before
    # Its memory is the packaged agent's, as `init` seeds it; no queue yet.
    assert (scratch.goals).is_dir() and not scratch.tasks_db.exists()


def test_the_scratch_config_pins_and_delivers_nothing(live: Instance, tmp_path: Path) -> None:
    live.config_path.write_text(
        live.config_path.read_text().replace("[agent]\n", "[agent]\nmax_cycles = 2\n", 1)
        + '\n[contribute]\nauto = "passed"\nremote = "/srv/remote.git"\n'
        + '\n[notify]\nwebhook = "https://hooks.example.invalid/x"\n'
        + '\n[route.pricing.models."gpt-4.1"]\ninput = 2\noutput = 8\ncache_write = 2\ncache_read = 0.5\n'
    )
    scratch = make_scratch(tmp_path / "scratch", live, 2, [])
    config, original = scratch.config(), live.config()
    assert config.agent.proposals == "drop" and config.agent.max_cycles is None
    assert config.contribute.auto == "never" and config.contribute.remote is None
    assert not config.notify.enabled
    assert config.route == original.route and config.probation == original.probation
    assert config.scripted_scenario == original.scripted_scenario
    assert "pinned to generation 2" in scratch.config_path.read_text()


def test_config_toml_reads_back_equal() -> None:
    config = InstanceConfig.model_validate(
        {
            "scripted_scenario": '/tmp/a b/"quoted"\x7f.json',
            "agent": {"model": "claude-sonnet-5-5", "memory_mb": 2048, "command": ["python", "-m", "agent"]},
            "route": {"caps": {"per_day": {"usd": "12.5"}}},
            "notify": {"webhook": "https://x.invalid/h", "headers": {"Authorization": "Bearer t", "X-A.b": "1"}},
            "disk": {"mode": "off"},
        }
    )
    assert InstanceConfig.model_validate(tomllib.loads(config_toml(config))) == config


def test_an_unknown_generation_is_refused_with_the_known_ones(live: Instance, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"generation 7 is not a generation .*it has: 0, 1, 2"):
        make_scratch(tmp_path / "scratch", live, 7, [])
    assert not (tmp_path / "scratch").exists()
    set_file = demo_set(tmp_path / "set.jsonl", "a" * 40)
    result = CliRunner().invoke(
        main, ["task", "bench", "--generation", "7", "--set", str(set_file), "--home", str(live.home)]
    )
    assert result.exit_code == 1 and "generation 7 is not a generation" in result.output
    assert "Traceback" not in result.output


def test_bad_lines_and_unknown_projects_are_listed_and_nothing_starts(live: Instance, tmp_path: Path) -> None:
    base = add_sample_project(live, tmp_path)
    before = live_state(live)
    good = demo_set(tmp_path / "set.jsonl", base).read_text().splitlines()
    other = json.loads(good[0]) | {"repo": "someone/elsewhere", "instance_id": "x-1"}
    missing_base = json.loads(good[1]) | {"instance_id": "x-2", "base_commit": "b" * 40}
    lines = [good[0], "{not json", json.dumps(other), good[1], json.dumps(missing_base), "[1, 2]"]
    set_file = tmp_path / "bad.jsonl"
    set_file.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(
        main, ["task", "bench", "--generation", "1", "--set", str(set_file), "--home", str(live.home), "--json"]
    )
    assert result.exit_code == 1, result.output
    error = json.loads(result.output)
    message = error["error"]["message"]
    assert "4 bad line(s)" in message and "the bench did not start" in message
    assert "line 2: not JSON" in message
    assert "line 3: repo 'someone/elsewhere' is no registered project" in message
    assert "line 5: base_commit bbbbbbbbbbbb" in message or "line 5: base_commit " + "b" * 40 in message
    assert "line 6:" in message and "line 1:" not in message and "line 4:" not in message
    assert live_state(live) == before and not (live.home / "bench").exists()


def test_an_empty_set_and_a_fifo_are_refused(live: Instance, tmp_path: Path) -> None:
    import os

    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    for path, words in ((empty, "holds no task"), (fifo, "is not a regular file")):
        result = CliRunner().invoke(
            main, ["task", "bench", "--generation", "0", "--set", str(path), "--home", str(live.home)]
        )
        assert result.exit_code == 1 and words in result.output, result.output


def _task(outcome: str, tokens: int, line: int = 1) -> BenchTask:
    return BenchTask(
        line=line,
        instance_id=f"i-{line}",
        task=line,
        project="p",
        title="\x1b[31mred\x1b[0m title",
        outcome=outcome,
        tokens=tokens,
        reason="",
        regressions=0,
    )


def test_headline_and_reports_kept_in_the_live_home(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    tasks = [_task("passed", 100, 1), _task("failed", 300, 2), _task("infrastructure", 50, 3), _task("passed", 200, 4)]
    figures = headline(tasks)
    assert figures == {
        "attempted": 3,
        "passed": 2,
        "infrastructure": 1,
        "pass_rate": 2 / 3,
        "tokens": 600,
        "tokens_per_passed_task": 300,
    }
    now = datetime.now(UTC)
    report = BenchReport(
        generation=3,
        commit="c" * 40,
        set_file="set.jsonl",
        started_at=now,
        finished_at=now,
        tasks=tasks,
        complete=True,
        scratch=None,
        **figures,
    )
    text = render(report)
    assert text.splitlines()[-1] == "pass rate 2/3 = 67% (1 infrastructure, not counted); tokens per passed task 300"
    saved = save_report(tmp_path, report)
    (tmp_path / "bench" / "zzz-not-a-report.json").write_text("{}")
    (tmp_path / "bench" / "zzzz-link.json").symlink_to(saved)
    assert latest_reports(tmp_path) == [report]  # the broken file and the link are skipped
    assert headline([]) == {
        "attempted": 0,
        "passed": 0,
        "infrastructure": 0,
        "pass_rate": None,
        "tokens": 0,
        "tokens_per_passed_task": None,
    }


def test_the_console_shows_the_latest_reports(live: Instance, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from supervisor.console import pages
    from supervisor.console.view import InstanceView

    now = datetime.now(UTC)
    hostile = "<script>alert(1)</script>\x1b[2J.jsonl"
    report = BenchReport(
        generation=1,
        commit="c" * 40,
        set_file=hostile,
        started_at=now,
        finished_at=now,
        tasks=[_task("passed", 100)],
        complete=True,
        scratch=None,
        **headline([_task("passed", 100)]),
    )
    save_report(live.home, report)
    live.state.mkdir(exist_ok=True)  # the state folder the gate makes at its first start
    html = pages.main_page(InstanceView(live))
    section = html[html.index('id="bench"') :]
    assert "1/1" in section and "100%" in section and '<a href="/g/1">gen 1</a>' in section
    assert "<script>alert" not in html and "&lt;script&gt;" in section


def test_git_never_reads_the_live_config(live: Instance, tmp_path: Path) -> None:
    """The live repository's own config (hooks path, fsmonitor) plays no part: nothing runs in it."""
    subprocess.run(["git", "config", "--file", str(live.repo / "config"), "core.fsmonitor", "touch /tmp/x"], check=True)
    scratch = make_scratch(tmp_path / "scratch", live, 0, [])
    assert "fsmonitor" not in (scratch.repo / "config").read_text()
