"""Token usage per LLM call and summed per cycle."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


def _count(usage: Any, name: str) -> int:
    value = getattr(usage, name, None)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


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
        """From the SDK's `Usage` object; a count that is missing or not a count (as from servers that
        report usage loosely or not at all) is 0 here: the supervisor's ledger, not this, is what caps."""
        return cls(
            input_tokens=_count(usage, "input_tokens"),
            output_tokens=_count(usage, "output_tokens"),
            cache_read_input_tokens=_count(usage, "cache_read_input_tokens"),
            cache_creation_input_tokens=_count(usage, "cache_creation_input_tokens"),
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
