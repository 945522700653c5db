"""The JSON the task commands print (listed in docs/json.md): a task never carries its hidden test patch."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from supervisor.store.tasks.models import Attempt, TaskState, TaskVerdict


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskOut(_Out):
    """`supervisor task add / cancel / retry --json`; `task list --json` prints an array of these."""

    id: int
    state: TaskState
    project: str
    title: str
    body: str = Field(description="The problem statement the agent reads.")
    base_commit: str
    fail_to_pass: list[str]
    pass_to_pass: list[str] | None = Field(description="null: every test that passes on the base.")
    test_patch_bytes: int = Field(description="Size of the hidden test patch; its text is never printed.")
    priority: int
    external_id: str | None = Field(description="An import's own id (SWE-bench instance_id).")
    source: str = Field(description="Who queued it: cli, import FILE, ...")
    created_at: datetime
    updated_at: datetime
    attempts: int
    fence: int = Field(description="Token of the newest claim.")
    worker: str | None = Field(description="Who holds it (running or judging).")
    lease_expires_at: datetime | None
    result_commit: str | None
    result_branch: str | None
    summary: str | None = Field(description="The agent's words for the pull request (agent-written).")
    verdict: TaskVerdict | None
    note: str | None = Field(description="Why it was cancelled, released or retried.")


class TaskShowOut(_Out):
    """`supervisor task show ID --json`."""

    task: TaskOut
    attempts: list[Attempt] = Field(description="Oldest first.")
    diff: str | None = Field(description="base..result_commit from the project mirror (agent-written); null: none.")
    diff_note: str | None = Field(description="Why there is no diff although there is a result.")


class SkippedLine(_Out):
    line: int
    message: str = Field(description="What is wrong with the line and what to fix.")


class TaskImportOut(_Out):
    """`supervisor task import FILE --json` (with --skip-bad; without it any bad line is an error)."""

    file: str
    queued: list[int] = Field(description="The new tasks' ids, in line order.")
    skipped: list[SkippedLine] = Field(description="Bad lines left out (only with --skip-bad).")
