"""Configuration of the LLM route: where it forwards, what it charges, where it stops.

Every model here is `extra="forbid"` so a typo in the operator's TOML is an error, not a silently
ignored cap.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from supervisor.base.toml_config import read_toml, validate
from supervisor.route.pricing import PricingTable


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UpstreamConfig(_Strict):
    """Where the route forwards requests, and where the real key comes from."""

    base_url: str = Field(
        default="https://api.anthropic.com",
        description="Base URL of the real Messages API or of the scripted model server.",
    )
    uds: Path | None = Field(default=None, description="Reach the upstream over this Unix socket instead of TCP.")
    api_key_env: str = Field(
        default="ANTHROPIC_API_KEY", description="Environment variable of the supervisor holding the real key."
    )
    api_key_file: Path | None = Field(
        default=None, description="File holding the real key; used when the variable is unset."
    )
    connect_timeout_s: float = Field(default=10.0, gt=0, description="Upstream connect timeout.")
    deadline_s: float = Field(default=600.0, gt=0, description="Whole-request deadline upstream, streaming included.")


class CapAmount(_Strict):
    """One cap in tokens and/or dollars; None means no cap in that unit."""

    tokens: int | None = Field(default=None, ge=0, description="All four usage counts summed.")
    usd: Decimal | None = Field(default=None, ge=0, description="Priced spend in US dollars.")


class Caps(_Strict):
    """Hard caps; a request is refused before forwarding if its worst case could pass any of them."""

    per_cycle: CapAmount = Field(
        default_factory=lambda: CapAmount(tokens=2_000_000, usd=Decimal("5")),
        description="Per agent cycle (header x-ouroboros-cycle; requests without it share one bucket).",
    )
    per_day: CapAmount = Field(
        default_factory=lambda: CapAmount(usd=Decimal("50")), description="Per UTC calendar day."
    )
    total: CapAmount = Field(default_factory=CapAmount, description="Over the whole ledger.")
    warn_at: list[float] = Field(
        default_factory=lambda: [0.8, 0.9], description="Fractions of a cap that raise a warning once."
    )


class RouteLimits(_Strict):
    """Limits that protect the route (and the supervisor hosting it) from a hostile client."""

    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, description="Largest request body.")
    rate_per_s: float = Field(default=5.0, gt=0, description="Sustained requests per second.")
    rate_burst: int = Field(default=20, ge=1, description="Requests allowed in a burst.")
    max_concurrent: int = Field(default=8, ge=1, description="Requests forwarded at the same time.")
    max_connections: int = Field(default=64, ge=1, description="Open client connections at once.")
    idle_timeout_s: float = Field(default=60.0, gt=0, description="Drop a silent client connection.")
    auth_failures_per_s: float = Field(default=1.0, gt=0, description="Failed authentications answered per second.")
    auth_failures_burst: int = Field(default=10, ge=1, description="Failed authentications answered in a burst.")
    stop_deadline_s: float = Field(
        default=30.0, ge=0, description="On stop, how long requests in flight may take to finish and be metered."
    )


class ServerToolPrice(_Strict):
    """An operator's explicit opt-in to one server-side tool type (e.g. `web_search_20250305`).

    Server tools let the provider reach the network for the agent and are billed per use, outside
    the four token counts; so each is refused unless listed here with its price and a use cap.
    """

    usd_per_use: Decimal = Field(ge=0, description="Price of one use, in US dollars.")
    max_uses: int = Field(ge=1, description="Uses per request; the request's own max_uses must not exceed it.")


class RequestPolicy(_Strict):
    """What a request may ask for: everything else is refused with a 400 naming the field."""

    models: list[str] = Field(
        default_factory=list,
        description="Models the agent may call besides agent.model (which is always allowed).",
    )
    max_tokens_ceiling: int = Field(default=32_000, ge=1, description="Largest max_tokens a request may set.")
    betas: list[str] = Field(
        default_factory=list, description="anthropic-beta values the route forwards; none by default."
    )
    server_tools: dict[str, ServerToolPrice] = Field(
        default_factory=dict, description="Server-side tool types allowed, each priced; none by default."
    )
    input_overhead_tokens: int = Field(
        default=4096,
        ge=0,
        description="Added to the body's size when bounding input tokens (tool and system prompts the API adds).",
    )
    image_tokens: int = Field(default=1600, ge=0, description="Input tokens reserved per image block.")
    max_json_nodes: int = Field(
        default=200_000,
        ge=100,
        description="Most JSON objects and arrays in one body (bounds the memory parsing takes).",
    )


class RouteConfig(_Strict):
    """Everything the supervisor decides about the agent's access to the LLM."""

    upstream: UpstreamConfig = Field(default_factory=UpstreamConfig)
    caps: Caps = Field(default_factory=Caps)
    limits: RouteLimits = Field(default_factory=RouteLimits)
    pricing: PricingTable = Field(default_factory=PricingTable.default)
    policy: RequestPolicy = Field(default_factory=RequestPolicy)

    @classmethod
    def load(cls, path: Path) -> RouteConfig:
        """The `[route]` table of an instance config (ouroboros.toml); the defaults if it has none."""
        data = read_toml(path, "pass an existing ouroboros.toml")
        return validate(cls, data.get("route", {}), f"the [route] table of {path}")
