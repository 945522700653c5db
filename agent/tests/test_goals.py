import pytest

from agent.errors import GoalsError
from agent.goals import GoalBook, parse_goals

ACTIVE = """# Active Goals

## First goal
Do the first thing.

## Second goal
Do the second thing.
"""


def test_parse_goals_reads_one_section_per_goal():
    goals = parse_goals(ACTIVE)
    assert [g.title for g in goals] == ["First goal", "Second goal"]
    assert goals[0].body == "Do the first thing."


def test_select_takes_the_first_goal(workspace):
    (workspace / "agent/goals/active.md").write_text(ACTIVE)
    assert GoalBook(workspace / "agent/goals").select().title == "First goal"


def test_no_goals_means_self_improvement(workspace):
    goal = GoalBook(workspace / "agent/goals").select()
    assert goal.self_improvement and goal.title == "Improve yourself"


def test_complete_moves_the_goal_with_its_result(workspace):
    book = GoalBook(workspace / "agent/goals")
    book.active_path.write_text(ACTIVE)
    book.complete(book.select(), "Done: it worked.", "2026-01-01T00:00:00Z")
    assert [g.title for g in book.read_active()] == ["Second goal"]
    completed = book.completed_path.read_text()
    assert completed.startswith("# Completed Goals")
    assert "## First goal" in completed and "**Result:** Done: it worked." in completed


def test_missing_goals_file_says_how_to_create_it(tmp_path):
    with pytest.raises(GoalsError, match="# Active Goals"):
        GoalBook(tmp_path).read_active()


def test_goals_file_without_header_is_rejected(workspace):
    (workspace / "agent/goals/active.md").write_text("some notes\n")
    with pytest.raises(GoalsError, match="must start with"):
        GoalBook(workspace / "agent/goals").read_active()
