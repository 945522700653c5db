"""Token usage as the API reports it, and what it costs.

Money is `Decimal` throughout so the ledger's sum is exact, never a float that drifts.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

_MILLION = Decimal(1_000_000)
USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)


class Usage(BaseModel):
    """The four counts the Messages API bills for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    cache_creation_input_tokens: int = Field(default=0, ge=0)
    cache_read_input_tokens: int = Field(default=0, ge=0)

    @property
    def total_tokens(self) -> int:
        return sum(getattr(self, name) for name in USAGE_FIELDS)


class ModelPrice(BaseModel):
    """US dollars per million tokens, for each of the four usage counts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: Decimal = Field(ge=0)
    output: Decimal = Field(ge=0)
    cache_write: Decimal = Field(ge=0, description="cache_creation_input_tokens.")
    cache_read: Decimal = Field(ge=0, description="cache_read_input_tokens.")

    @classmethod
    def standard(cls, input_usd: str, output_usd: str) -> ModelPrice:
        """Anthropic's usual ratios: a 5-minute cache write costs 1.25x input, a cache read 0.1x."""
        base = Decimal(input_usd)
        return cls(input=base, output=Decimal(output_usd), cache_write=base * Decimal("1.25"), cache_read=base / 10)

    def cost(self, usage: Usage) -> Decimal:
        micro = (
            self.input * usage.input_tokens
            + self.output * usage.output_tokens
            + self.cache_write * usage.cache_creation_input_tokens
            + self.cache_read * usage.cache_read_input_tokens
        )
        return micro / _MILLION


class PricingTable(BaseModel):
    """Prices by model name; a name matches exactly, else by its longest listed prefix."""

    model_config = ConfigDict(extra="forbid")

    models: dict[str, ModelPrice]

    @classmethod
    def default(cls) -> PricingTable:
        std = ModelPrice.standard
        # Newer families whose published prices this table does not know are charged at the highest
        # listed rate: spend can only be over-counted, never under-counted, until the operator sets
        # the real price under [route.pricing.models].
        conservative = std("15", "75")
        return cls(
            models={
                "claude-opus-5": conservative,
                "claude-sonnet-5": conservative,
                "claude-haiku-5": conservative,
                "claude-fable-5": conservative,
                "claude-mythos": conservative,
                "claude-opus-4-8": conservative,
                "claude-opus-4-7": conservative,
                "claude-opus-4-6": conservative,
                "claude-sonnet-4-6": conservative,
                "claude-opus-4-5": std("5", "25"),
                "claude-opus-4-1": std("15", "75"),
                "claude-opus-4": std("15", "75"),
                "claude-sonnet-4-5": std("3", "15"),
                "claude-sonnet-4": std("3", "15"),
                "claude-3-7-sonnet": std("3", "15"),
                "claude-haiku-4-5": std("1", "5"),
                "claude-3-5-haiku": std("0.80", "4"),
                "claude-3-haiku": std("0.25", "1.25"),
            }
        )

    def price_for(self, model: str) -> ModelPrice | None:
        if model in self.models:
            return self.models[model]
        prefixes = [name for name in self.models if model.startswith(name)]
        return self.models[max(prefixes, key=len)] if prefixes else None
