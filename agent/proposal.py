"""Proposal message v1: the only thing the agent tells the supervisor (see docs/protocol.md)."""

from __future__ import annotations

import os
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.errors import AgentConfigError


class Proposal(BaseModel):
    """A request to gate the workspace's current changes; the supervisor diffs the tree itself."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    kind: Literal["proposal"] = "proposal"
    id: str = Field(default_factory=lambda: uuid.uuid4().hex, pattern=r"^[0-9a-f]{32}$")
    why: str = Field(min_length=1, max_length=20_000, description="the reason; becomes the commit body")
    summary: str = Field(
        min_length=1, max_length=200, pattern=r"^[^\r\n]+$", description="one line; becomes the commit subject"
    )
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


def summary_from_why(why: str) -> str:
    """The first line of the reason, cut to a commit-subject length."""
    first = why.strip().splitlines()[0].strip() if why.strip() else "Self-modification"
    return first if len(first) <= 72 else first[:69].rstrip() + "..."


def write_proposal(outbox: Path, why: str, summary: str | None = None) -> tuple[Proposal, Path]:
    """Validate and drop the proposal atomically (temp file in the outbox, then rename)."""
    proposal = Proposal(why=why.strip(), summary=(summary or summary_from_why(why)).strip())
    return proposal, drop_message(outbox, f"proposal-{proposal.id}.json", proposal.model_dump_json())


def drop_message(outbox: Path, name: str, text: str) -> Path:
    """Write one message into the outbox atomically (temp file, fsync, rename): a reader sees all or nothing."""
    try:
        outbox.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=outbox)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        final = outbox / name
        os.replace(tmp, final)
    except OSError as e:
        raise AgentConfigError(f"cannot write {name} into {outbox}: {e.strerror or e}; check OUROBOROS_OUTBOX") from e
    return final


def pending_proposals(outbox: Path) -> list[Proposal]:
    """Proposals still in the outbox (the supervisor removes the ones it took)."""
    if not outbox.is_dir():
        return []
    found = []
    for path in sorted(outbox.glob("proposal-*.json")):
        try:
            found.append(Proposal.model_validate_json(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue  # half-read or foreign file: not ours to judge here
    return found
