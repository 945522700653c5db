"""What the gatekeeper decided, as records: a verdict on one proposal, and a rollback's result."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from supervisor.store.gate_results import Failure


class VerdictSummary(BaseModel):
    """What happened to one proposal, in brief (what `supervisor status` keeps)."""

    model_config = ConfigDict(extra="forbid")

    candidate: str
    state: str
    commit: str | None = None
    generation: int | None = None
    reasons: list[str] = Field(default_factory=list)


class Verdict(VerdictSummary):
    """What happened to one proposal, with the failing tests and protected paths."""

    failures: list[Failure] = Field(default_factory=list)
    protected: list[str] = Field(default_factory=list)


class RollbackResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    previous: str
    target: str
    generation: int | None
    kept_as: str = Field(description="The ref that keeps the rolled-back commits reachable.")
