"""Task records and the one table of allowed task transitions.

queued → running → judging → passed | failed | infrastructure
                 ↘ gave-up (deadline or token budget)   ↘ queued (released: stop, lost lease)
any of queued/running/judging → cancelled; any final state → queued again by `retry`.

Every claim of a task issues a fencing token (`fence`) that only grows; every write that ends an
attempt names the token it was given, and a write with an older token is refused (a supervisor
that lost its task, a late result) and never applied.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from supervisor.base.errors import OuroborosError
from supervisor.store.projects import NAME_PATTERN

MAX_TITLE = 200
MAX_BODY = 100_000
MAX_TEST_PATCH = 2_000_000
MAX_TEST_IDS = 5_000
MAX_TEST_ID = 1_000
COMMIT_PATTERN = r"^[0-9a-f]{40}$"


class TaskError(OuroborosError):
    """A task that does not exist, or a change its state does not allow (said as what to do)."""


class TaskState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"  # claimed; the agent works on it
    JUDGING = "judging"  # the agent said it is done; the result commit is being judged
    PASSED = "passed"
    FAILED = "failed"
    GAVE_UP = "gave-up"  # past its deadline or token budget
    INFRASTRUCTURE = "infrastructure"  # the project's tests could not run at all: never the agent's fault
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


FINAL = frozenset(
    {TaskState.PASSED, TaskState.FAILED, TaskState.GAVE_UP, TaskState.INFRASTRUCTURE, TaskState.CANCELLED}
)
HELD = frozenset({TaskState.RUNNING, TaskState.JUDGING})  # states an attempt holds (with a fence)
VERDICTS = frozenset({TaskState.PASSED, TaskState.FAILED, TaskState.GAVE_UP, TaskState.INFRASTRUCTURE})

_T = TaskState
ALLOWED: dict[TaskState, frozenset[TaskState]] = {
    _T.QUEUED: frozenset({_T.RUNNING, _T.CANCELLED}),
    _T.RUNNING: frozenset({_T.JUDGING, _T.GAVE_UP, _T.QUEUED, _T.CANCELLED, _T.INFRASTRUCTURE}),
    _T.JUDGING: frozenset({_T.PASSED, _T.FAILED, _T.INFRASTRUCTURE, _T.QUEUED, _T.CANCELLED}),
    _T.PASSED: frozenset({_T.QUEUED}),
    _T.FAILED: frozenset({_T.QUEUED}),
    _T.GAVE_UP: frozenset({_T.QUEUED}),
    _T.INFRASTRUCTURE: frozenset({_T.QUEUED}),
    _T.CANCELLED: frozenset({_T.QUEUED}),
}


def check_task(before: TaskState, after: TaskState) -> None:
    """The one check every implementation makes before it changes a task's state."""
    if after not in ALLOWED[before]:
        raise TaskError(f"a task that is {before} cannot become {after}")


class NewTask(BaseModel):
    """What an operator (or an import) asks for; the queue gives it an id."""

    model_config = ConfigDict(extra="forbid")

    project: str = Field(pattern=NAME_PATTERN)
    title: str = Field(min_length=1, max_length=MAX_TITLE, pattern=r"^[^\r\n]+$")
    body: str = Field(default="", max_length=MAX_BODY, description="The problem statement the agent reads.")
    base_commit: str = Field(pattern=COMMIT_PATTERN, description="Resolved by the supervisor before queueing.")
    fail_to_pass: list[str] = Field(
        default_factory=list, max_length=MAX_TEST_IDS, description="Tests that must fail on base and pass after."
    )
    pass_to_pass: list[str] | None = Field(
        default=None,
        max_length=MAX_TEST_IDS,
        description="Tests that must keep passing; None: every test that passes on the base.",
    )
    test_patch: str = Field(default="", max_length=MAX_TEST_PATCH, description="Hidden from the agent.")
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000, description="Higher runs first.")
    external_id: str | None = Field(
        default=None, max_length=200, description="An import's own id (SWE-bench instance_id); unique per project."
    )
    source: str = Field(default="cli", max_length=200, description="Who queued it: cli, import FILE, bench.")


class TestOutcomes(BaseModel):
    """The lists a verdict is made of (test ids as pytest prints them)."""

    model_config = ConfigDict(extra="forbid")

    fail_to_pass_passed: list[str] = Field(default_factory=list)
    fail_to_pass_failed: list[str] = Field(default_factory=list, description="Still failing (or missing) after.")
    regressions: list[str] = Field(default_factory=list, description="Passed on the base; not passing after.")
    pass_to_pass_checked: int = 0


class TaskVerdict(BaseModel):
    """The supervisor's judgement of one attempt, from its own container runs."""

    model_config = ConfigDict(extra="forbid")

    outcome: Literal["passed", "failed", "gave-up", "infrastructure"]
    reason: str = Field(max_length=20_000)
    base_commit: str
    result_commit: str | None = None
    tests: TestOutcomes = Field(default_factory=TestOutcomes)
    needs_review: bool = Field(
        default=False, description="Touches tests or test machinery: never pushed automatically."
    )
    review_reasons: list[str] = Field(default_factory=list)
    refused: list[str] = Field(default_factory=list, description="Work-area entries the snapshot refused.")
    tokens: int = 0
    test_time_s: float = 0.0
    duration_s: float = 0.0

    @property
    def state(self) -> TaskState:
        return TaskState(self.outcome)


class Task(NewTask):
    """A queued task as the queue returns it."""

    id: int
    state: TaskState
    created_at: datetime
    updated_at: datetime
    attempts: int = 0
    fence: int = Field(default=0, description="Token of the newest claim; only grows.")
    worker: str | None = Field(default=None, description="Who holds it (running/judging).")
    lease_expires_at: datetime | None = None
    result_commit: str | None = None
    result_branch: str | None = None
    summary: str | None = Field(default=None, description="The agent's words for the pull request.")
    verdict: TaskVerdict | None = None
    note: str | None = Field(default=None, description="Why it was cancelled or released, for the operator.")


class Claim(BaseModel):
    """One attempt's hold on a task; every write that ends the attempt carries it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task_id: int
    attempt: int
    fence: int
    worker: str
    lease_expires_at: datetime


class Attempt(BaseModel):
    """One claim of a task and how it ended, kept for the task's history."""

    model_config = ConfigDict(extra="forbid")

    task_id: int
    number: int
    fence: int
    worker: str
    started_at: datetime
    ended_at: datetime | None = None
    ended_as: TaskState | None = None
    reason: str | None = None
    result_commit: str | None = None
    tokens: int = 0
    refused_late: bool = Field(default=False, description="A write with this attempt's fence came after it ended.")
