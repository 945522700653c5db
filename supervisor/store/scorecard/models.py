"""What the scorecard store hands out: one card per generation, one row per judged candidate."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict


class GenerationCard(BaseModel):
    """One generation's scorecard (see docs/console.md for each field's source)."""

    model_config = ConfigDict(extra="forbid")

    generation: int
    commit: str
    parent: str | None = None
    parent_generation: int | None = None
    candidate: str | None = None
    accepted_at: float | None = None
    why: str = ""
    gate_s: float | None = None
    acceptance: str | None = None
    alive_s: float = 0.0
    cycles: int = 0
    goals: int = 0
    tokens: int = 0
    usd: Decimal = Decimal(0)
    requests: int = 0
    made: int = 0
    accepted: int = 0
    rejected: int = 0
    waiting: int = 0
    starts: int = 0
    crashes: int = 0
    rollbacks_from: int = 0
    rolled_back: bool = False
    probation_passed: bool = False
    tasks_attempted: int = 0
    tasks_passed: int = 0
    tasks_failed: int = 0
    tasks_infrastructure: int = 0
    task_regressions: int = 0
    task_tokens: int = 0

    @property
    def restarts(self) -> int:
        return max(0, self.starts - 1)

    @property
    def tokens_per_goal(self) -> float | None:
        return self.tokens / self.goals if self.goals else None

    @property
    def task_pass_rate(self) -> float | None:
        """Passed over attempted (infrastructure verdicts are neither): None before any attempt."""
        return self.tasks_passed / self.tasks_attempted if self.tasks_attempted else None

    @property
    def tokens_per_passed_task(self) -> float | None:
        """Tokens of every attempt the generation was judged on, over the tasks it passed."""
        return self.task_tokens / self.tasks_passed if self.tasks_passed else None

    def derived(self) -> dict[str, Any]:
        """The figures computed from the stored ones, as shown beside them (JSON, pages)."""
        return {
            "restarts": self.restarts,
            "tokens_per_goal": self.tokens_per_goal,
            "task_pass_rate": self.task_pass_rate,
            "tokens_per_passed_task": self.tokens_per_passed_task,
        }


class CandidateRow(BaseModel):
    """What the store keeps of one judged proposal."""

    model_config = ConfigDict(extra="forbid")

    id: str
    gen: int
    state: str
    at: float
    commit: str | None = None
    summary: str = ""
    reasons: list[str] = []
    failures: list[dict[str, Any]] = []
    gate_s: float | None = None
    generation: int | None = None
