"""The supervisor's own copy of the agent → supervisor messages (v1); it never imports agent code."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from supervisor.base.errors import OuroborosError

MAX_MESSAGE_BYTES = 64_000


class ProtocolError(OuroborosError, ValueError):
    """A message from the agent could not be read as a valid proposal."""


class Proposal(BaseModel):
    """A self-modification proposal; the changed files are found by the supervisor's own diff."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1]
    kind: Literal["proposal"]
    id: str = Field(pattern=r"^[0-9a-f]{32}$", description="uuid4 hex chosen by the agent.")
    why: str = Field(min_length=1, max_length=20_000, description="The reason; becomes the commit body.")
    summary: str = Field(
        min_length=1, max_length=200, pattern=r"^[^\r\n]+$", description="One line; becomes the commit subject."
    )
    created_at: datetime

    def commit_message(self) -> str:
        return f"{self.summary.strip()}\n\n{self.why.strip()}\n\nProposal-Id: {self.id}\n"


def parse_proposal(data: bytes) -> Proposal:
    """Validate raw bytes from the outbox; anything oversized or malformed is refused."""
    return Proposal.model_validate(_payload(data, "proposal"))


def _payload(data: bytes, what: str) -> object:
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"{what} is {len(data)} bytes, more than {MAX_MESSAGE_BYTES}; it is ignored")
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"{what} is not JSON ({exc}); it is ignored") from exc


class TaskResult(BaseModel):
    """v2: the agent says it is done with its task. Trusted for nothing but "please judge now":
    the task id must be the task the supervisor gave this run, and the summary is only text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[2]
    kind: Literal["task-result"]
    id: str = Field(pattern=r"^[0-9a-f]{32}$", description="uuid4 hex chosen by the agent.")
    task: int = Field(ge=1, description="The task id the agent was given.")
    summary: str = Field(min_length=1, max_length=20_000, description="The agent's words for the pull request.")
    created_at: datetime


def parse_message(data: bytes) -> Proposal | TaskResult:
    """A v1 proposal or a v2 task result; anything else is refused (ProtocolError or ValueError)."""
    payload = _payload(data, "message")
    if isinstance(payload, dict) and payload.get("kind") == "task-result":
        return TaskResult.model_validate(payload)
    return Proposal.model_validate(payload)
