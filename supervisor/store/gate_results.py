"""The gate's verdict on one commit, as a record: its passes, failures and reasons.

The gate (`supervisor.gate.passes`) produces these; candidate records, verdicts and the CLI's
JSON keep and show them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from supervisor.store.acceptance_report import AcceptanceReport

PassName = Literal["candidate", "main-tests", "baseline", "acceptance"]


class Failure(BaseModel):
    model_config = ConfigDict(extra="forbid")

    test_id: str
    message: str = ""


class PassResult(BaseModel):
    """One container run of the test command."""

    model_config = ConfigDict(extra="forbid")

    name: PassName
    ok: bool
    reason: str = Field(default="", description="Why the pass failed; empty when it passed.")
    exit_code: int | None = None
    timed_out: bool = False
    infrastructure: bool = Field(default=False, description="The engine failed this pass (not the candidate's fault).")
    duration_s: float = 0.0
    counts: dict[str, int] = Field(default_factory=dict)
    failures: list[Failure] = Field(default_factory=list)
    log_tail: str = ""


class GateResult(BaseModel):
    """The whole verdict of the gate on one commit."""

    model_config = ConfigDict(extra="forbid")

    commit: str
    base: str | None
    passed: bool
    needs_approval: bool = False
    reasons: list[str] = Field(default_factory=list)
    protected: list[str] = Field(default_factory=list)
    changed_tests: list[str] = Field(default_factory=list)
    tamper: list[str] = Field(default_factory=list, description="Diff lines touching pytest/Python machinery.")
    failures: list[Failure] = Field(default_factory=list)
    passes: list[PassResult] = Field(default_factory=list)
    test_ids: dict[str, str] = Field(default_factory=dict, description="Candidate pass: id → outcome.")
    duration_s: float = 0.0
    acceptance: AcceptanceReport | None = Field(default=None, description="Held-out acceptance, operator's eyes only.")
