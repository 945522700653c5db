"""`ouroboros run` until SIGTERM, the breaking-change scenario, and the errors a user can hit."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from conftest import SCENARIOS, agent_env, make_workspace, run_agent

from agent.journal import JournalRecord
from scripted_model import Scenario


def _wait_for(predicate, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_sigterm_finishes_the_step_and_exits_zero(workspace, serve):
    server = serve(SCENARIOS / "idle_loop.json")
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "run"],
        cwd=workspace,
        env=agent_env(workspace, server.url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert _wait_for(lambda: server.steps_served >= 6), "the agent did not start cycling"
        proc.send_signal(signal.SIGTERM)  # lands while a 200 ms model call is in flight
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "stopped after" in err and "Traceback" not in err
    records = [
        JournalRecord.model_validate_json(line)
        for path in (workspace / "agent/journal").glob("*/*/*/entries.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert [r.kind for r in records].count("cycle") >= 2  # every line parses: nothing torn by the signal
    assert records[-1].data.get("status") in ("complete", "stopped") or records[-1].kind == "reflection"


def test_sigterm_during_a_long_command_kills_it_and_journals_the_stop(workspace, serve):
    server = serve(
        Scenario(
            steps=[
                {"content": [{"type": "text", "text": "1. Run the slow check."}]},
                {
                    "content": [
                        {"type": "tool_use", "name": "run_command", "input": {"command": "sleep 120", "timeout_s": 300}}
                    ]
                },
                {"content": [{"type": "text", "text": "unreachable: the agent stops before asking again"}]},
            ]
        )
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "run"],
        cwd=workspace,
        env=agent_env(workspace, server.url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert _wait_for(lambda: server.steps_served >= 2), "the command never started"
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)  # far less than the 120 s command
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert server.steps_served == 2
    notes = next((workspace / "agent/journal").glob("*/*/*/notes.md")).read_text()
    assert "**Status:** stopped" in notes and "killed: the agent is stopping" in notes


def test_max_cycles_bounds_a_run(workspace, serve):
    server = serve(SCENARIOS / "idle_loop.json")
    result = run_agent(workspace, "run", "--max-cycles", "2", env=agent_env(workspace, server.url))
    assert result.returncode == 0, result.stderr
    assert server.steps_served == 8 and "stopped after 2 cycle(s)" in result.stderr


def test_breaking_change_is_proposed_and_its_suite_fails(tmp_path, serve):
    """The agent proposes a change that breaks its own test; the gate (its suite) must fail on it."""
    ws = make_workspace(tmp_path / "ws")  # no goals: self-improvement
    server = serve(SCENARIOS / "breaking_change.json")
    result = run_agent(ws, "cycle", "--once", env=agent_env(ws, server.url))
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "outbox").glob("proposal-*.json"))) == 1
    suite = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "agent/tests"],
        cwd=ws,
        capture_output=True,
        text=True,
        timeout=300,
        env=agent_env(ws, code=ws),
    )
    assert suite.returncode == 1
    assert "FAILED agent/tests/test_word_count.py::test_word_count_reports_lines_words_and_chars" in suite.stdout


def test_missing_key_explains_the_scripted_model(workspace):
    result = run_agent(workspace, "cycle", "--once", env=agent_env(workspace))
    assert result.returncode == 1
    assert "no API key" in result.stderr and "python -m scripted_model serve --scenario" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_goals_file(workspace, serve):
    (workspace / "agent/goals/active.md").unlink()
    result = run_agent(workspace, "run", env=agent_env(workspace, "http://127.0.0.1:9"))
    assert result.returncode == 1 and "no goals file" in result.stderr and "# Active Goals" in result.stderr


def test_unreadable_journal(workspace):
    day = workspace / "agent/journal/2026/01/02"
    day.mkdir(parents=True)
    (day / "notes.md").write_bytes(b"\xff\xfe")
    result = run_agent(workspace, "status", env=agent_env(workspace))
    assert result.returncode == 1 and "cannot read journal file" in result.stderr and "Traceback" not in result.stderr


def test_unreachable_model_is_a_clear_error(workspace):
    result = run_agent(
        workspace, "cycle", "--once", env=agent_env(workspace, "http://127.0.0.1:9", OUROBOROS_MAX_RETRIES="1")
    )
    assert result.returncode == 1 and "cannot reach the model" in result.stderr and "Traceback" not in result.stderr


def test_bad_scenario_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"steps": [{"content": [{"type": "text"}]}]}')
    result = subprocess.run(
        [sys.executable, "-m", "scripted_model", "serve", "--scenario", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "scenario file" in result.stderr and "steps.0.content.0.text.text: Field required" in result.stderr


def test_reflect_command_reflects_without_a_task(workspace, serve):
    server = serve(
        Scenario(
            steps=[
                {
                    "content": [
                        {
                            "type": "text",
                            "text": "### Summary\nQuiet day.\n\n### Lessons learned\n- Rest.\n\n"
                            "### Improvement recommendations\n- None.",
                        }
                    ],
                    "match": {"contains": "## Reflection without a task"},
                },
                {
                    "content": [{"type": "text", "text": "NO CHANGE: nothing to improve."}],
                    "match": {"contains": "## Step: self-modify"},
                },
            ]
        )
    )
    result = run_agent(workspace, "reflect", env=agent_env(workspace, server.url))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("reflection; proposals: none")
    reflections = next((workspace / "agent/journal").glob("*/*/*/reflections.md")).read_text()
    assert "### Lessons learned\n\n- Rest." in reflections and "NO CHANGE" in reflections


def test_feedback_reaches_the_next_prompt(workspace, serve):
    assert (
        run_agent(workspace, "feedback", "Please keep reports under 20 lines.", env=agent_env(workspace)).returncode
        == 0
    )
    server = serve(SCENARIOS / "idle_loop.json")
    assert run_agent(workspace, "cycle", "--once", env=agent_env(workspace, server.url)).returncode == 0
    first_prompt = server.requests[0]["messages"][0]["content"][0]["text"]
    assert "### Recent user feedback" in first_prompt and "Please keep reports under 20 lines." in first_prompt
