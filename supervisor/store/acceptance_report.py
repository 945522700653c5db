"""The acceptance stage's verdict as a record: what the gate result and the candidate record keep.

The scenarios themselves (what is asked, what must come of it) are the gate's
(`supervisor.gate.acceptance.models`); only their outcome is stored.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CheckKind(StrEnum):
    """What kind of check failed: the only part of a verdict the agent's journal learns."""

    TOOL_RESULT = "tool-result"
    FILES = "files"
    JOURNAL = "journal"
    GOAL = "goal"
    PROPOSAL = "proposal"
    EXIT_CODE = "exit-code"
    OUTPUT = "output"
    DEADLINE = "deadline"
    INFRASTRUCTURE = "infrastructure"


class Problem(_Strict):
    kind: CheckKind
    detail: str = Field(description="For the operator only: may quote the scenario.")


class ScenarioOutcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"  # the stage could not run it (infrastructure): not a verdict on the candidate


class ScenarioResult(_Strict):
    scenario: str
    outcome: ScenarioOutcome
    problems: list[Problem] = Field(default_factory=list)
    exit_code: int | None = None
    requests: int = 0
    wall_s: float = 0.0
    agent_s: float | None = Field(
        default=None,
        description="The agent's container's run time as the engine measured it (create to removal), if measured.",
    )
    output_tail: str = ""
    engine_failed: bool = Field(default=False, description="The container engine failed this run (not the candidate).")


class AcceptanceReport(_Strict):
    """The acceptance stage's verdict on one commit."""

    commit: str
    outcome: ScenarioOutcome
    scenarios: list[ScenarioResult] = Field(default_factory=list)
    duration_s: float = 0.0

    def failed_kinds(self) -> list[str]:
        kinds = {p.kind.value for s in self.scenarios for p in s.problems}
        return sorted(kinds)

    def summary(self) -> str:
        """One line without any scenario content: all the agent's journal may learn.

        Not even which kinds of check failed: a candidate that saw a scenario could choose which
        kinds to fail and so pass bits of it to the next generation. The kinds and the details are
        for the operator (`supervisor show`).
        """
        if self.outcome is ScenarioOutcome.PASSED:
            return f"acceptance passed ({len(self.scenarios)} scenarios)"
        what = "could not run" if self.outcome is ScenarioOutcome.ERROR else "failed"
        return f"acceptance {what} (held-out scenarios: details for the operator only)"

    def engine_failed(self) -> bool:
        """The engine, not the candidate, kept the stage from a verdict (and no
        scenario failed on its own merits: a candidate that fails one is not excused by another)."""
        return (
            self.outcome is ScenarioOutcome.ERROR
            and any(s.engine_failed for s in self.scenarios)
            and not any(s.outcome is ScenarioOutcome.FAILED for s in self.scenarios)
        )
