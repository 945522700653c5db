"""The JSON the `supervisor fleet` commands print (listed in docs/json.md); a task never carries its hidden test patch."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from supervisor.cli.task_contract import SkippedLine, TaskOut
from supervisor.store.tasks.models import Attempt
from supervisor.store.tasks.priority import PriorityBreakdown


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FleetTaskOut(_Out):
    """`supervisor fleet add --json`; `fleet tasks --json` prints an array of these."""

    task: TaskOut
    language: str | None = Field(description="The language the per-language limit counts it under.")
    breakdown: PriorityBreakdown | None = Field(description="How its priority was computed; null: queued without.")


class FleetImportOut(_Out):
    """`supervisor fleet import FILE --json` (with --skip-bad; without it any bad line is an error)."""

    file: str
    queued: list[int] = Field(description="The new tasks' ids, in line order.")
    skipped: list[SkippedLine] = Field(description="Bad lines left out (only with --skip-bad).")
    unchecked_bases: list[str] = Field(
        description="Projects this node has no mirror of: their bases and test patches were not checked here."
    )


class FleetTaskShowOut(_Out):
    """`supervisor fleet task show ID --json`."""

    task: TaskOut
    attempts: list[Attempt] = Field(description="Oldest first.")
    breakdown: PriorityBreakdown | None
    metadata: dict[str, Any] = Field(description="The task's fleet metadata (language, labels, issue date).")
    analysis: dict[str, Any] | None = Field(
        description="The model's estimate (state, node, at, result) when one was asked for (`fleet analyse`)."
    )
    diff: str | None = Field(description="base..result_commit from [fleet] results_remote (agent-written).")
    diff_note: str | None = Field(description="Why there is no diff although there is a result.")


class FleetAnalyseOut(_Out):
    """`supervisor fleet analyse [ID]... [--queued] --json`."""

    asked: list[int] = Field(description="The tasks now waiting for a node's analysis.")


class FleetDrainOut(_Out):
    """`supervisor fleet drain NODE [--undo] --json`."""

    node: str
    draining: bool = Field(description="After the command.")
    holds: list[int] = Field(description="Tasks the node still holds (it finishes them).")


class FleetProjectOut(_Out):
    """`supervisor fleet project add --json`; `fleet project list --json` prints an array of these."""

    name: str
    source: str
    language: str
    language_from: str = Field(description="given, config, detected (from the mirror's files) or unknown.")
