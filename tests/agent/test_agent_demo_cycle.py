"""The demo scenario: a goal done with tools, a refused write, a reflection, a self-written tool proposed."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from conftest import agent_env

HEADING = re.compile(r"^## (\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z) (\S+)$", re.MULTILINE)


def _day_file(ws, name):
    files = list((ws / "agent/journal").glob(f"*/*/*/{name}"))
    assert len(files) == 1, files
    return files[0].read_text()


def test_cycle_succeeds_and_goal_moves_to_completed(demo):
    ws, result, requests = demo
    assert result.returncode == 0, result.stderr
    assert "complete; proposals:" in result.stdout
    assert len(requests) == 11
    active = (ws / "agent/goals/active.md").read_text()
    assert "Inventory the TODO markers" not in active and "## Later goal" in active
    completed = (ws / "agent/goals/completed.md").read_text()
    assert "## Inventory the TODO markers" in completed and "**Result:** Wrote reports/todo.md" in completed


def test_tools_really_ran(demo):
    ws, _, _ = demo
    assert "src/app.py:2:" in (ws / "reports/todo.md").read_text()


def test_notes_entry_format(demo):
    ws, _, _ = demo
    notes = _day_file(ws, "notes.md")
    assert HEADING.findall(notes)[0][1] == "cycle"
    for part in (
        "**Goal:** Inventory the TODO markers",
        "**Status:** complete",
        "**Tokens:** input",
        "### Plan",
        "### Actions",
        "### Result",
    ):
        assert part in notes
    assert "`search_content`" in notes and "`run_command`" in notes


def test_write_to_own_source_was_refused_during_execution(demo):
    ws, _, requests = demo
    notes = _day_file(ws, "notes.md")
    assert re.search(r"`write_file` \{\"path\": \"agent/tools/find_todos.py\".*→ failed: error: refused", notes)
    refused = [b for b in requests[3]["messages"][-1]["content"] if b.get("type") == "tool_result"]
    assert refused[0]["is_error"] is True and "reflection phase" in refused[0]["content"]


def test_reflection_entry_has_the_sections_and_the_proposal(demo):
    ws, _, _ = demo
    reflections = _day_file(ws, "reflections.md")
    assert [kind for _, kind in HEADING.findall(reflections)] == ["reflection"]
    sections = [
        reflections.index(f"### {s}")
        for s in ("Summary", "Lessons learned", "Improvement recommendations", "Self-modification")
    ]
    assert sections == sorted(sections)
    assert re.search(r"\*\*Proposals:\*\* [0-9a-f]{32}", reflections)


def test_proposal_message_v1_in_the_outbox(demo):
    ws, _, _ = demo
    files = list((ws.parent / "outbox").glob("proposal-*.json"))
    assert len(files) == 1
    data = json.loads(files[0].read_text())
    assert set(data) == {"version", "kind", "id", "why", "summary", "created_at"}
    assert data["version"] == 1 and data["kind"] == "proposal" and "find_todos" in data["summary"]
    assert list((ws.parent / "outbox").glob(".*")) == []  # no temp file left behind


def test_usage_recorded_per_call_and_per_cycle(demo):
    ws, _, _ = demo
    calls = [json.loads(line) for line in _day_file(ws, "usage.jsonl").splitlines()]
    assert len(calls) == 11 and all(c["input_tokens"] > 0 and c["output_tokens"] > 0 for c in calls)
    assert calls[0]["cache_creation_input_tokens"] > 0 and calls[1]["cache_read_input_tokens"] > 0
    records = [json.loads(line) for line in _day_file(ws, "entries.jsonl").splitlines()]
    reflection = next(r for r in records if r["kind"] == "reflection")
    assert reflection["data"]["cycle_usage"]["calls"] == 11
    assert reflection["data"]["cycle_usage"]["input_tokens"] == sum(c["input_tokens"] for c in calls)


def test_stable_prefix_is_marked_for_caching(demo):
    _, _, requests = demo
    assert all(r["system"][-1]["cache_control"] == {"type": "ephemeral"} for r in requests)
    assert all(r["tools"][-1]["cache_control"] == {"type": "ephemeral"} for r in requests)
    assert len({json.dumps([r["system"], r["tools"]]) for r in requests}) == 1  # byte-identical prefix


def test_new_tool_and_test_pass_the_agents_own_suite(demo):
    """What the gate will run: the candidate tree's agent/tests, including the test the agent wrote."""
    ws, _, _ = demo
    assert (ws / "agent/tools/find_todos.py").exists() and (ws / "agent/tests/test_find_todos.py").exists()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "agent/tests"],
        cwd=ws,
        capture_output=True,
        text=True,
        timeout=300,
        env=agent_env(ws, code=ws),
    )
    assert result.returncode == 0, result.stdout[-3000:]
    own = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "agent/tests/test_find_todos.py"],
        cwd=ws,
        capture_output=True,
        text=True,
        timeout=300,
        env=agent_env(ws, code=ws),
    )
    assert "3 passed" in own.stdout, own.stdout[-2000:]
