import json
import os

import pytest

from agent.errors import PathEscapeError, ProtectedPathError, ToolError
from agent.registry import default_registry


@pytest.fixture(scope="module")
def tools():
    return default_registry()


def call(tools, ctx, name, **args):
    return tools.get(name).call(ctx, args)


def test_run_command_returns_exit_code_and_output(tools, ctx):
    out = call(tools, ctx, "run_command", command="echo hello; echo oops >&2; exit 3")
    assert out.splitlines()[0] == "exit code: 3"
    assert "hello" in out and "oops" in out


def test_run_command_runs_in_the_workspace(tools, ctx):
    assert call(tools, ctx, "run_command", command="pwd").splitlines()[1] == str(ctx.workspace)


def test_run_command_timeout_kills_it(tools, ctx):
    out = call(tools, ctx, "run_command", command="sleep 30", timeout_s=0.5)
    assert "killed after 0.5s timeout" in out


def test_run_command_output_is_capped(tools, ctx):
    out = call(tools, ctx, "run_command", command="head -c 100000 /dev/zero | tr '\\0' x")
    assert len(out) < ctx.output_cap + 200 and "more bytes cut" in out


def test_write_then_read(tools, ctx):
    call(tools, ctx, "write_file", path="notes/a.txt", content="one\ntwo\nthree\n")
    assert call(tools, ctx, "read_file", path="notes/a.txt") == "one\ntwo\nthree\n"
    assert call(tools, ctx, "read_file", path="notes/a.txt", start_line=2, max_lines=1) == "two\n"


def test_writes_to_own_source_are_refused_while_executing(tools, ctx):
    with pytest.raises(ProtectedPathError, match="reflection phase"):
        call(tools, ctx, "write_file", path="agent/tools/new.py", content="x")
    assert not (ctx.workspace / "agent/tools/new.py").exists()
    call(tools, ctx, "write_file", path="agent/journal/note.md", content="memory is writable")


def test_writes_to_own_source_are_allowed_while_reflecting(tools, ctx):
    reflect = ctx.model_copy(update={"phase": "reflect"})
    call(tools, reflect, "write_file", path="agent/tools/new.py", content="x = 1\n")
    assert (ctx.workspace / "agent/tools/new.py").read_text() == "x = 1\n"


def test_tools_refuse_escapes(tools, ctx, tmp_path):
    (tmp_path / "secret.txt").write_text("s")
    os.symlink(tmp_path / "secret.txt", ctx.workspace / "link.txt")
    with pytest.raises(PathEscapeError):
        call(tools, ctx, "read_file", path="link.txt")
    with pytest.raises(PathEscapeError):
        call(tools, ctx, "write_file", path="../evil.txt", content="x")
    with pytest.raises(ToolError):
        call(tools, ctx, "search_files", pattern="../*")
    assert "link.txt" not in call(tools, ctx, "search_files", pattern="*")


def test_search_files_and_content(tools, ctx):
    (ctx.workspace / "src").mkdir()
    (ctx.workspace / "src/a.py").write_text("import os\n# TODO: later\n")
    (ctx.workspace / "src/b.txt").write_text("TODO too\n")
    assert call(tools, ctx, "search_files", pattern="src/*.py") == "src/a.py"
    assert call(tools, ctx, "search_content", regex=r"TODO", path="src", glob="*.py") == "src/a.py:2: # TODO: later"
    assert call(tools, ctx, "search_content", regex="nothing-like-this") == "no matches"
    with pytest.raises(ToolError, match="bad regex"):
        call(tools, ctx, "search_content", regex="(")


def test_propose_only_in_reflection(tools, ctx):
    with pytest.raises(ToolError, match="only in the reflection phase"):
        call(tools, ctx, "propose", why="because")
    reflect = ctx.model_copy(update={"phase": "reflect"})
    out = call(tools, reflect, "propose", why="Faster search.\nDetails.", summary="Speed up search")
    files = list(ctx.outbox.glob("proposal-*.json"))
    assert len(files) == 1 and files[0].stem.removeprefix("proposal-") in out
    assert json.loads(files[0].read_text())["summary"] == "Speed up search"


def test_run_command_gives_up_when_the_agent_stops(tools, ctx):
    import threading

    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    out = call(tools, ctx.model_copy(update={"stop": stop}), "run_command", command="sleep 30")
    assert out.splitlines()[0] == "exit code: killed: the agent is stopping"
