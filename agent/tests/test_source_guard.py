from agent.source_guard import SourceSnapshot


def test_shell_changes_to_own_source_are_undone(workspace):
    (workspace / "agent/loop.py").write_text("original\n")
    (workspace / "agent/gone.py").write_text("keep me\n")
    snapshot = SourceSnapshot(workspace)
    (workspace / "agent/loop.py").write_text("tampered\n")
    (workspace / "agent/gone.py").unlink()
    (workspace / "agent/added.py").write_text("new\n")
    (workspace / "agent/journal/notes.md").write_text("memory changes stay\n")
    (workspace / "report.txt").write_text("work output stays\n")

    assert snapshot.restore() == ["agent/added.py", "agent/gone.py", "agent/loop.py"]
    assert (workspace / "agent/loop.py").read_text() == "original\n"
    assert (workspace / "agent/gone.py").read_text() == "keep me\n"
    assert not (workspace / "agent/added.py").exists()
    assert (workspace / "agent/journal/notes.md").exists() and (workspace / "report.txt").exists()


def test_nothing_to_restore_when_untouched(workspace):
    assert SourceSnapshot(workspace).restore() == []
