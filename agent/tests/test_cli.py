import json

from click.testing import CliRunner

from agent.cli import main


def invoke(workspace, *args, env=None):
    env = {
        "OUROBOROS_OUTBOX": str(workspace.parent / "outbox"),
        "ANTHROPIC_API_KEY": "",
        "ANTHROPIC_AUTH_TOKEN": "",
        **(env or {}),
    }
    return CliRunner().invoke(main, ["--workspace", str(workspace), *args], env=env)


def test_tools_list_shows_builtins_and_self_registered(workspace):
    result = invoke(workspace, "tools", "list", "--json")
    assert result.exit_code == 0, result.output
    names = {t["name"]: t["origin"] for t in json.loads(result.output)}
    assert names["word_count"] == "agent.tools.word_count" and names["run_command"] == "agent.builtin_tools"


def test_a_self_registered_tool_is_a_subcommand(workspace):
    (workspace / "t.txt").write_text("a b c\n")
    result = invoke(workspace, "tools", "word_count", "--path", "t.txt", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"tool": "word_count", "ok": True, "output": "lines=1 words=3 chars=6"}


def test_cli_tools_refuse_own_source(workspace):
    result = invoke(workspace, "tools", "write_file", "--path", "agent/x.py", "--content", "x")
    assert result.exit_code == 1 and "reflection phase" in result.output


def test_feedback_status_and_propose(workspace):
    assert invoke(workspace, "feedback", "Keep reports short").exit_code == 0
    proposed = invoke(workspace, "propose", "--why", "Because tests pass.", "--json")
    assert proposed.exit_code == 0, proposed.output
    status = json.loads(invoke(workspace, "status", "--json").output)
    assert status["journal_entries"] == 2 and status["active_goals"] == []
    assert status["pending_proposals"] == [json.loads(proposed.output)["id"]]


def test_missing_key_says_how_to_use_the_scripted_model(workspace):
    result = invoke(workspace, "cycle", "--once")
    assert result.exit_code == 1
    assert "ANTHROPIC_API_KEY" in result.output and "python -m scripted_model serve" in result.output
    assert "Traceback" not in result.output


def test_missing_goals_file_is_a_clear_error(workspace):
    (workspace / "agent/goals/active.md").unlink()
    result = invoke(workspace, "cycle", "--once", env={"ANTHROPIC_API_KEY": "k"})
    assert result.exit_code == 1 and "no goals file" in result.output
