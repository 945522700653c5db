"""Agent settings: one pydantic model built from CLI options and environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_MODEL = "claude-sonnet-5-5"


class ContextLimits(BaseModel):
    """Caps on what the prompts include from memory, so tokens per cycle stay flat as the journal grows."""

    model_config = ConfigDict(extra="forbid")

    recent_entries: int = Field(default=6, ge=0, description="journal entries quoted (newest first)")
    entry_chars: int = Field(default=1200, ge=100, description="characters kept from each quoted entry")
    feedback_entries: int = Field(default=3, ge=0, description="user-feedback entries quoted")
    lessons: int = Field(default=8, ge=0, description="older lessons listed in the summary")
    summary_chars: int = Field(default=1500, ge=200, description="characters of the summary of older entries")


class AgentConfig(BaseModel):
    """Everything the agent process needs; no hidden globals."""

    model_config = ConfigDict(extra="forbid")

    workspace: Path = Field(description="the agent repository tree the tools work in (the process cwd in a container)")
    model: str = Field(default=DEFAULT_MODEL, description="Claude model id (env OUROBOROS_MODEL)")
    max_tokens: int = Field(default=4096, ge=1, le=64000, description="max output tokens per call")
    base_url: str | None = Field(default=None, description="Messages API base URL (env ANTHROPIC_BASE_URL)")
    llm_socket: Path | None = Field(default=None, description="Unix socket of the LLM route (env OUROBOROS_LLM_SOCKET)")
    outbox: Path = Field(description="where proposals are dropped (env OUROBOROS_OUTBOX)")
    task_file: Path | None = Field(
        default=None, description="the task the supervisor gives this run, if any (env OUROBOROS_TASK_FILE)"
    )
    max_retries: int = Field(
        default=4, ge=0, description="SDK retries on 408/409/429/5xx/overloaded (env OUROBOROS_MAX_RETRIES)"
    )
    request_timeout_s: float = Field(default=300.0, gt=0)
    max_llm_failures: int = Field(default=3, ge=1, description="cycles in a row the model may fail before the run ends")
    error_backoff_s: float = Field(default=5.0, ge=0, description="pause after a failed cycle, doubled each time")
    budget_wait_max_s: float = Field(
        default=3600.0, ge=0, description="longest idle wait when a spending cap is reached"
    )
    max_turns: int = Field(default=12, ge=1, description="tool-use turns per step")
    command_timeout_s: float = Field(default=120.0, gt=0, description="run_command default timeout")
    output_cap: int = Field(default=16_000, ge=256, description="characters of tool output returned to the model")
    context: ContextLimits = Field(default_factory=ContextLimits)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> AgentConfig:
        """Build from environment variables; explicit (non-None) overrides win."""
        env = os.environ if env is None else env
        workspace = Path(
            str(overrides.pop("workspace", None) or env.get("OUROBOROS_WORKSPACE") or Path.cwd())
        ).resolve()
        values: dict[str, object] = {
            "workspace": workspace,
            "model": env.get("OUROBOROS_MODEL") or DEFAULT_MODEL,
            "base_url": env.get("ANTHROPIC_BASE_URL") or None,
            "llm_socket": env.get("OUROBOROS_LLM_SOCKET") or None,
            "outbox": env.get("OUROBOROS_OUTBOX") or workspace / ".ouroboros" / "outbox",
            "task_file": env.get("OUROBOROS_TASK_FILE") or None,
        }
        for key in ("max_tokens", "max_retries"):
            if env.get(f"OUROBOROS_{key.upper()}"):
                values[key] = env[f"OUROBOROS_{key.upper()}"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)

    @property
    def goals_dir(self) -> Path:
        return self.workspace / "agent" / "goals"

    @property
    def journal_dir(self) -> Path:
        return self.workspace / "agent" / "journal"
