"""The acceptance stage's trusted parts without Docker: the scripted server's phases, the judge, safe reads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from supervisor.base.errors import ConfigError
from supervisor.cli import main
from supervisor.gate.acceptance.judge import Evidence, judge
from supervisor.gate.acceptance.library import default_scenarios, load_scenario_file, scenario_set
from supervisor.gate.acceptance.model_server import MAX_REQUESTS, AcceptanceState, RecordedResult
from supervisor.gate.acceptance.models import AcceptanceSettings, CheckKind, Scenario
from supervisor.gate.acceptance.readback import SafeTree, UnsafeFile

TOOLS = [{"name": "read_file", "input_schema": {"type": "object"}}]


def scenario(**extra) -> Scenario:
    data = {
        "name": "t",
        "execute": [
            {"key": "a", "tool": "read_file", "input": {"path": "x"}},
            {"key": "b", "tool": "read_file", "input": {"path": "y"}, "same_turn": True},
            {"key": "c", "tool": "word_count", "input": {"path": "x"}},
        ],
        "self_modify": [{"key": "p", "tool": "propose", "input": {"why": "w"}}],
    }
    return Scenario.model_validate({**data, **extra})


def ask(state: AcceptanceState, messages: list, tools: bool = True) -> dict:
    body = {"model": "m", "max_tokens": 10, "messages": messages, "tools": TOOLS}
    if not tools:
        body["tool_choice"] = {"type": "none"}
    _, step, problem = state.next_step(body)
    assert problem is None and step is not None
    return {"stop": step.resolved_stop_reason(), "blocks": step.content}


def results_for(reply: dict, text: str = "ok", is_error: bool = False) -> dict:
    blocks = [
        {"type": "tool_result", "tool_use_id": b.id, "content": text, "is_error": is_error}
        for b in reply["blocks"]
        if b.type == "tool_use"
    ]
    return {"role": "user", "content": blocks}


def test_the_server_moves_by_phase_not_by_wording_and_extra_text_calls_change_nothing():
    state = AcceptanceState(scenario())
    assert ask(state, [{"role": "user", "content": "anything at all"}], tools=False)["stop"] == "end_turn"
    first = ask(state, [{"role": "user", "content": "reworded execute prompt"}])
    assert [b.name for b in first["blocks"] if b.type == "tool_use"] == ["read_file", "read_file"]
    history = [results_for(first, "contents of x")]
    assert ask(state, history, tools=False)["stop"] == "end_turn"  # an extra verification call mid-step
    second = ask(state, history)
    assert [b.name for b in second["blocks"] if b.type == "tool_use"] == ["word_count"]
    history.append(results_for(second, "error: nope", is_error=True))
    end = ask(state, history)
    assert end["stop"] == "end_turn" and "GOAL STATUS: complete" in end["blocks"][0].text
    assert ask(state, history)["stop"] == "end_turn"  # a tool-offering check before reflecting: no new calls
    assert "### Lessons learned" in ask(state, history, tools=False)["blocks"][0].text  # the reflection
    modify = ask(state, history)
    assert [b.name for b in modify["blocks"] if b.type == "tool_use"] == ["propose"]
    ask(state, [*history, results_for(modify, "proposal written")])
    assert state.results == {
        "a": RecordedResult(text="contents of x", is_error=False),
        "b": RecordedResult(text="contents of x", is_error=False),
        "c": RecordedResult(text="error: nope", is_error=True),
        "p": RecordedResult(text="proposal written", is_error=False),
    }


def test_the_first_result_sent_for_a_call_is_the_one_recorded_and_foreign_ids_are_ignored():
    state = AcceptanceState(scenario())
    ask(state, [], tools=False)
    first = ask(state, [])
    ask(state, [results_for(first, "honest")])
    forged = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_made_up", "content": "x"}]}
    ask(state, [results_for(first, "rewritten later"), forged])
    assert state.results["a"].text == "honest" and set(state.results) == {"a", "b"}


def test_a_flood_of_requests_is_refused_past_the_cap():
    state = AcceptanceState(scenario())
    for _ in range(MAX_REQUESTS):
        ask(state, [], tools=False)
    _, step, _ = state.next_step({"messages": []})
    assert step is not None and step.error is not None and state.flooded


def test_stop_is_requested_after_the_configured_number_of_answers():
    state = AcceptanceState(scenario(stop_after_requests=2))
    ask(state, [], tools=False)
    assert not state.stop_requested.is_set()
    ask(state, [])
    assert state.stop_requested.is_set()


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def evidence(tmp_path: Path, results: dict | None = None, exit_code: int = 0) -> Evidence:
    (tmp_path / "ws").mkdir(exist_ok=True)
    (tmp_path / "outbox").mkdir(exist_ok=True)
    return Evidence(results or {}, tmp_path / "ws", tmp_path / "outbox", exit_code, False, "")


def test_the_judge_reports_each_kind_of_failure(tmp_path: Path):
    spec = Scenario.model_validate(
        {
            "name": "j",
            "execute": [
                {"key": "wc", "tool": "word_count", "expect": {"regex": [r"words=3\b"]}},
                {"key": "gone", "tool": "read_file"},
            ],
            "expect": {
                "goal_completed": "G",
                "proposals": 1,
                "files": [{"path": "r.txt", "equals": "x"}],
                "journal": [{"file": "notes", "kind": "cycle", "contains": ["**Status:** complete"]}],
            },
        }
    )
    ws = tmp_path / "ws"
    write(ws, "agent/goals/active.md", "# Active Goals\n\n## G\n")
    write(ws, "agent/journal/2026/11/29/notes.md", "## 2026-11-29T00:00:00Z cycle\n\n**Status:** incomplete\n")
    write(ws, "r.txt", "y\n")
    write(tmp_path / "outbox", "proposal-bad.json", "{not json")
    problems = judge(spec, evidence(tmp_path, {"wc": RecordedResult(text="lines=1 words=4", is_error=False)}, 1))
    kinds = sorted({p.kind.value for p in problems})
    assert kinds == ["exit-code", "files", "goal", "journal", "proposal", "tool-result"]
    details = " ".join(p.detail for p in problems)
    assert "'gone': no result was sent back" in details and "does not match" in details


def test_the_judge_passes_a_run_that_did_it_all(tmp_path: Path):
    spec = Scenario.model_validate(
        {
            "name": "ok",
            "execute": [{"key": "wc", "tool": "word_count", "expect": {"regex": [r"words=3\b"]}}],
            "expect": {
                "goal_completed": "G",
                "proposals": 1,
                "journal": [{"file": "reflections", "kind": "reflection", "contains": ["### Summary"]}],
            },
        }
    )
    ws = tmp_path / "ws"
    write(ws, "agent/goals/active.md", "# Active Goals\n")
    write(ws, "agent/goals/completed.md", "# Completed Goals\n\n## G\n\ndone\n")
    write(ws, "agent/journal/2026/11/29/reflections.md", "## 2026-11-29T00:00:00Z reflection\n\n### Summary\n\nok\n")
    proposal = {
        "version": 1,
        "kind": "proposal",
        "id": "a" * 32,
        "why": "w",
        "summary": "s",
        "created_at": "2026-11-29T00:00:00Z",
    }
    write(tmp_path / "outbox", f"proposal-{'a' * 32}.json", json.dumps(proposal))
    assert judge(spec, evidence(tmp_path, {"wc": RecordedResult(text="lines=1 words=3", is_error=False)})) == []


def test_links_and_fifos_the_agent_left_are_refused_not_followed(tmp_path: Path):
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "b").symlink_to("..")
    (ws / "chain").symlink_to("b/b/secret.txt")
    os.mkfifo(ws / "fifo")
    write(ws, "big.txt", "x" * 2000)
    tree = SafeTree(ws)
    for relative in ("chain", "b/secret.txt", "fifo"):
        with pytest.raises(UnsafeFile):
            tree.read(relative)
    with pytest.raises(UnsafeFile):
        tree.read("big.txt", cap=1000)
    spec = Scenario.model_validate(
        {"name": "l", "expect": {"exit_code": None, "files": [{"path": "chain", "contains": ["host"]}]}}
    )
    assert [p.kind for p in judge(spec, evidence(tmp_path))] == [CheckKind.FILES]


def test_default_scenarios_load_and_cover_the_contract():
    names = {s.name for s in default_scenarios()}
    assert {"builtin-tools", "word-count", "cycle-contract", "cli-tool", "sigterm"} <= names
    tools = {c.tool for s in default_scenarios() for c in s.calls()}
    assert {
        "read_file",
        "search_content",
        "search_files",
        "run_command",
        "write_file",
        "word_count",
        "propose",
    } <= tools


def test_bad_scenarios_are_refused_with_the_reason(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[fixtures]\n"../escape" = "no"\n')
    with pytest.raises(ConfigError, match="plain relative path"):
        load_scenario_file(bad)
    bad.write_text('name = "x"\nsurprise = 1\n')
    with pytest.raises(ConfigError, match="surprise"):
        load_scenario_file(bad)


def test_cli_lists_shows_and_adds_scenarios_held_in_the_instance(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("OUROBOROS_HOME", raising=False)
    home = tmp_path / "home"
    home.mkdir()
    (home / "ouroboros.toml").write_text("[acceptance]\nmax_parallel = 2\n")
    mine = tmp_path / "mine.toml"
    mine.write_text('name = "my-check"\ndescription = "mine"\nargv = ["status"]\n')
    runner = CliRunner()
    added = runner.invoke(main, ["acceptance", "add", str(mine), "--home", str(home)])
    assert added.exit_code == 0, added.output
    assert (home / "acceptance" / "my-check.toml").is_file()
    again = runner.invoke(main, ["acceptance", "add", str(mine), "--home", str(home)])
    assert again.exit_code == 1 and "exists already" in again.output
    listed = runner.invoke(main, ["acceptance", "list", "--home", str(home), "--json"])
    assert "my-check" in [row["name"] for row in json.loads(listed.output)]
    shown = runner.invoke(main, ["acceptance", "show", "my-check", "--home", str(home), "--json"])
    assert json.loads(shown.output)["argv"] == ["status"]
    assert runner.invoke(main, ["acceptance", "add", str(mine)]).exit_code == 1
    only_mine = scenario_set(home, AcceptanceSettings(defaults=False))
    assert [s.name for s in only_mine] == ["my-check"]


def test_a_commit_without_an_agent_cannot_pass_acceptance(tmp_path: Path):
    from supervisor.base.git_ops import Git
    from supervisor.gate.acceptance.models import ScenarioOutcome
    from supervisor.gate.acceptance.stage import run_stage
    from supervisor.store.instance import AgentSettings
    from tests.acceptance.candidates import git

    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("no agent here\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "no agent")
    report = run_stage(
        Git(repo / ".git"),
        None,
        "never-used",
        "unit",
        tmp_path / "scratch",
        git(repo, "rev-parse", "HEAD"),
        default_scenarios(),
        1,
        AgentSettings(),
    )
    assert report.outcome is ScenarioOutcome.ERROR
    assert report.failed_kinds() == ["infrastructure"] and "could not run" in report.summary()


def test_a_counted_result_listing_every_number_fails_and_the_true_one_passes():
    from supervisor.gate.acceptance.models import ResultExpectation

    expect = ResultExpectation(counts={"lines": 4, "words": 20, "chars": 108}, max_chars=400)
    assert expect.problems('{"lines": 4, "words": 20, "chars": 108}') == []
    shotgun = " ".join(f"lines {i} words {i} chars {i}" for i in range(1200))  # a hostile word_count
    assert expect.problems(shotgun)
    short_shotgun = " ".join(f"lines {i} words {i} chars {i}" for i in (4, 20, 108))
    assert any("other than" in p for p in expect.problems(short_shotgun))
    assert any("no number" in p for p in expect.problems("it has some lines and words"))


def test_the_agent_learns_one_bit_and_only_engine_errors_excuse_a_candidate():
    from supervisor.gate.acceptance.models import AcceptanceReport, CheckKind, Problem, ScenarioOutcome, ScenarioResult

    failed = ScenarioResult(
        scenario="word-count",
        outcome=ScenarioOutcome.FAILED,
        problems=[Problem(kind=CheckKind.TOOL_RESULT, detail="words 21 != 20 in field-notes")],
    )
    report = AcceptanceReport(commit="c" * 40, outcome=ScenarioOutcome.FAILED, scenarios=[failed])
    told = report.summary()
    assert "failed" in told and "tool-result" not in told and "word-count" not in told and "field" not in told
    assert not report.engine_failed()
    crashed_judge = ScenarioResult(
        scenario="x",
        outcome=ScenarioOutcome.ERROR,
        engine_failed=False,
        problems=[Problem(kind=CheckKind.INFRASTRUCTURE, detail="ValueError")],
    )
    assert not AcceptanceReport(
        commit="c" * 40, outcome=ScenarioOutcome.ERROR, scenarios=[crashed_judge]
    ).engine_failed()
    engine_gone = crashed_judge.model_copy(update={"engine_failed": True})
    assert AcceptanceReport(commit="c" * 40, outcome=ScenarioOutcome.ERROR, scenarios=[engine_gone]).engine_failed()
    # A scenario the candidate failed on its own merits is not excused by another the engine broke
    # (e.g. the candidate filled the capped area, and the next scenario's layout met the full disk).
    both = AcceptanceReport(commit="c" * 40, outcome=ScenarioOutcome.ERROR, scenarios=[failed, engine_gone])
    assert not both.engine_failed()
