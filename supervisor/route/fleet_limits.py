"""The fleet's caps as a node configures them, and how the fleet's budget fails: no database driver here.

The route imports this module always; the PostgreSQL side (fleet_budget.py, fleet_caps.py) only
when a node has a fleet, so a single machine never loads psycopg.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from supervisor.base.errors import OuroborosError


class FleetCaps(BaseModel):
    """The fleet-wide caps a node's requests reserve against; None switches one off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weekly_tokens: int | None = Field(default=5_000_000, ge=0, description="Tokens per ISO week, the whole fleet.")
    project_tokens: int | None = Field(default=100_000, ge=0, description="Tokens per project, while its task runs.")
    day_tokens: int | None = Field(default=None, ge=0, description="Tokens per UTC day, the whole fleet.")
    day_usd: Decimal | None = Field(default=None, ge=0, description="US dollars per UTC day, the whole fleet.")


class FleetUnavailable(OuroborosError):
    """The fleet's budget cannot be consulted now (database unreachable); the request must not be forwarded."""
