"""Goals: `agent/goals/active.md` (`# Active Goals`, then one `## Title` per goal) and `completed.md`."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from agent.errors import GoalsError

ACTIVE_HEADER = "# Active Goals"
COMPLETED_HEADER = "# Completed Goals"
SELF_IMPROVEMENT = (
    "Improve yourself",
    "No goals are active. Look at your recent journal, reflections and tools, find one small, testable "
    "improvement to your own capabilities, and note it for the reflection phase (your own source is "
    "read-only until then).",
)
_GOAL_HEADING = re.compile(r"^## +(.+?)\s*$")


class Goal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str
    body: str = ""
    self_improvement: bool = False


def parse_goals(text: str) -> list[Goal]:
    """Every `## Title` section after the `# Active Goals` header; text before the first goal is ignored."""
    goals: list[Goal] = []
    title: str | None = None
    lines: list[str] = []
    for line in text.splitlines():
        heading = _GOAL_HEADING.match(line)
        if heading:
            if title is not None:
                goals.append(Goal(title=title, body="\n".join(lines).strip()))
            title, lines = heading.group(1), []
        elif title is not None:
            lines.append(line)
    if title is not None:
        goals.append(Goal(title=title, body="\n".join(lines).strip()))
    return goals


def render_goals(header: str, goals: list[Goal]) -> str:
    sections = [f"## {g.title}\n\n{g.body}".rstrip() for g in goals]
    return "\n\n".join([header, *sections]) + "\n"


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


class GoalBook:
    """Reads the active goals, selects one, and moves finished goals to completed.md."""

    def __init__(self, goals_dir: Path) -> None:
        self.active_path = goals_dir / "active.md"
        self.completed_path = goals_dir / "completed.md"

    def read_active(self) -> list[Goal]:
        try:
            text = self.active_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise GoalsError(
                f"no goals file at {self.active_path}; create it with a '{ACTIVE_HEADER}' line "
                "(add '## Title' sections for goals, or leave it empty to let the agent improve itself)"
            ) from None
        except (OSError, UnicodeDecodeError) as e:
            raise GoalsError(f"cannot read {self.active_path}: {e}; fix its permissions or encoding (UTF-8)") from e
        if text.strip() and not text.lstrip().startswith(ACTIVE_HEADER):
            raise GoalsError(
                f"{self.active_path} must start with '{ACTIVE_HEADER}', then one '## Title' section per goal"
            )
        return parse_goals(text)

    def select(self) -> Goal:
        """The first active goal; with none, a self-improvement goal."""
        active = self.read_active()
        if active:
            return active[0]
        title, body = SELF_IMPROVEMENT
        return Goal(title=title, body=body, self_improvement=True)

    def complete(self, goal: Goal, result: str, when: str) -> None:
        """Remove the goal from active.md and append it, with its result, to completed.md."""
        remaining = [g for g in self.read_active() if g.title != goal.title]
        done = parse_goals(self.completed_path.read_text(encoding="utf-8")) if self.completed_path.exists() else []
        body = f"{goal.body}\n\n**Completed:** {when}\n\n**Result:** {result.strip()}".strip()
        done.append(Goal(title=goal.title, body=body))
        _atomic_write(self.completed_path, render_goals(COMPLETED_HEADER, done))
        _atomic_write(self.active_path, render_goals(ACTIVE_HEADER, remaining))
