"""The tool the agent wrote for itself in the demo is, in the next generation, callable both ways."""

from __future__ import annotations

import json

from conftest import agent_env, run_agent

from scripted_model import Scenario

NEXT_GENERATION_SCENARIO = Scenario(
    name="use-find-todos",
    steps=[
        {"content": [{"type": "text", "text": "1. Call find_todos."}]},
        {"content": [{"type": "tool_use", "name": "find_todos", "input": {"glob": "src/*.py"}}]},
        {
            "content": [{"type": "text", "text": "Found the markers.\nGOAL STATUS: complete"}],
            "match": {"tool_result_contains": "src/app.py:2:"},
        },
        {
            "content": [
                {
                    "type": "text",
                    "text": "### Summary\nUsed my own tool.\n\n### Lessons learned\n- It works.\n\n"
                    "### Improvement recommendations\n- None.",
                }
            ]
        },
        {"content": [{"type": "text", "text": "NO CHANGE: the tool does its job."}]},
    ],
)


def test_subcommand_appears_with_no_other_edit(demo):
    ws, _, _ = demo
    env = agent_env(ws, code=ws)  # the candidate tree as the running code, as after the gate passes
    listed = run_agent(ws, "tools", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert {"name": "find_todos", "origin": "agent.tools.find_todos"}.items() <= {
        k: v for t in json.loads(listed.stdout) if t["name"] == "find_todos" for k, v in t.items()
    }.items()
    called = run_agent(ws, "tools", "find_todos", "--glob", "src/*.py", env=env)
    assert called.returncode == 0, called.stderr
    assert called.stdout.strip() == "src/app.py:2: pass  # TODO: handle errors"


def test_the_model_can_call_it(demo, serve):
    ws, _, _ = demo
    (ws / "agent/goals/active.md").write_text("# Active Goals\n\n## List markers\n\nUse your tool.\n")
    server = serve(NEXT_GENERATION_SCENARIO)
    result = run_agent(ws, "cycle", "--once", env=agent_env(ws, server.url, code=ws))
    assert result.returncode == 0, result.stderr
    assert "find_todos" in [t["name"] for t in server.requests[0]["tools"]]
    tool_result = server.requests[2]["messages"][-1]["content"][0]
    assert tool_result["type"] == "tool_result" and not tool_result["is_error"]
    assert tool_result["content"] == "src/app.py:2: pass  # TODO: handle errors"


def test_the_current_generation_does_not_have_it_yet(demo):
    ws, _, _ = demo
    result = run_agent(ws, "tools", "find_todos", env=agent_env(ws))  # code = main, not the candidate
    assert result.returncode == 2 and "No such command 'find_todos'" in result.stderr
