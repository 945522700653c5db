"""Token usage per LLM call and summed per cycle."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Usage(BaseModel):
    """Input, output and prompt-cache tokens; `calls` counts the LLM calls summed into it."""

    model_config = ConfigDict(extra="forbid")

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    calls: int = 0

    @classmethod
    def from_api(cls, usage: Any) -> Usage:
        """From the SDK's `Usage` object (missing cache fields count as 0)."""
        return cls(
            input_tokens=usage.input_tokens or 0,
            output_tokens=usage.output_tokens or 0,
            cache_read_input_tokens=getattr(usage, "cache_read_input_tokens", 0) or 0,
            cache_creation_input_tokens=getattr(usage, "cache_creation_input_tokens", 0) or 0,
            calls=1,
        )

    def __add__(self, other: Usage) -> Usage:
        return Usage(**{k: getattr(self, k) + getattr(other, k) for k in Usage.model_fields})

    @property
    def prompt_tokens(self) -> int:
        """Everything sent as input, cached or not."""
        return self.input_tokens + self.cache_read_input_tokens + self.cache_creation_input_tokens

    def line(self) -> str:
        return (
            f"input {self.input_tokens} · output {self.output_tokens} · cache read {self.cache_read_input_tokens}"
            f" · cache write {self.cache_creation_input_tokens} · {self.calls} calls"
        )
