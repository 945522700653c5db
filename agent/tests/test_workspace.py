import os

import pytest

from agent.errors import PathEscapeError, ProtectedPathError
from agent.workspace import check_write_allowed, is_agent_source, resolve_inside


@pytest.mark.parametrize(
    ("path", "protected"),
    [
        ("agent/loop.py", True),
        ("agent/tools/new_tool.py", True),
        ("agent/tests/test_x.py", True),
        ("agent", True),
        ("scripted_model/server.py", True),
        ("gate.toml", True),
        ("agent/journal/2026/01/01/notes.md", False),
        ("agent/goals/active.md", False),
        ("agentx/file.py", False),
        ("reports/todo.md", False),
        ("gate.toml.bak", False),
    ],
)
def test_agent_source_is_code_but_not_memory(path, protected):
    assert is_agent_source(path) is protected


def test_relative_paths_resolve_inside(workspace):
    assert resolve_inside(workspace, "a/b.txt") == workspace.resolve() / "a" / "b.txt"


@pytest.mark.parametrize("path", ["../outside.txt", "/etc/passwd", "a/../../x", ""])
def test_paths_leaving_the_workspace_are_refused(workspace, path):
    with pytest.raises(PathEscapeError):
        resolve_inside(workspace, path)


def test_symlink_leading_outside_is_refused(workspace, tmp_path):
    (tmp_path / "secret").write_text("s")
    os.symlink(tmp_path / "secret", workspace / "link")
    os.symlink(tmp_path, workspace / "dirlink")
    with pytest.raises(PathEscapeError, match="outside the workspace"):
        resolve_inside(workspace, "link")
    with pytest.raises(PathEscapeError):
        resolve_inside(workspace, "dirlink/new-file")


def test_symlink_into_own_source_is_protected(workspace):
    (workspace / "agent" / "loop.py").write_text("")
    os.symlink(workspace / "agent" / "loop.py", workspace / "innocent.py")
    resolved = resolve_inside(workspace, "innocent.py")
    with pytest.raises(ProtectedPathError, match="reflection phase"):
        check_write_allowed(workspace, resolved, "execute")
    check_write_allowed(workspace, resolved, "reflect")
