"""Caps against spend: reserve the worst case before forwarding, warn once at 80% and 90%.

A request is forwarded only if spend recorded, plus every reservation still open, plus this
request's own worst case fits under every cap; the check and the reservation happen under the
ledger's lock, so no interleaving of concurrent requests can pass a cap.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from supervisor.route.config import CapAmount, Caps
from supervisor.route.ledger import Ledger, LedgerTotals, Reservation, Spend, utc_now
from supervisor.route.pricing import Usage

log = logging.getLogger("ouroboros.route")

Scope = Literal["cycle", "day", "total"]
Unit = Literal["tokens", "usd"]
EventKind = Literal[
    "budget_warning",
    "budget_refused",
    "limit_refused",
    "auth_refused",
    "upstream_error",
    "ledger_failed",
    "policy_refused",
    "reservation_exceeded",
    "fleet_unavailable",
]


class RouteEvent(BaseModel):
    """Something the supervisor should journal: a warning, a refusal, an upstream failure."""

    model_config = ConfigDict(extra="forbid")

    kind: EventKind
    message: str
    ts: datetime = Field(default_factory=utc_now)
    run_id: str | None = None
    cycle: str | None = None
    details: dict[str, str | int | float] = Field(default_factory=dict)


EventSink = Callable[[RouteEvent], None]


class CapStatus(BaseModel):
    """Spend in one scope against one cap."""

    model_config = ConfigDict(extra="forbid")

    scope: Scope
    key: str = Field(description="The cycle id, the UTC day, or 'all'.")
    unit: Unit
    spent: Decimal
    cap: Decimal
    fraction: float
    reserved: Decimal = Field(default=Decimal(0), description="Held by requests in flight.")
    asked: Decimal = Field(default=Decimal(0), description="The refused request's worst case.")

    @property
    def reached(self) -> bool:
        return self.spent >= self.cap

    def describe(self) -> str:
        unit = "USD" if self.unit == "usd" else "tokens"
        where = {"cycle": f"cycle {self.key}", "day": f"UTC day {self.key}", "total": "total"}[self.scope]
        text = f"{where}: {self.spent} of {self.cap} {unit} ({self.fraction:.0%})"
        if self.asked:
            text += f", {self.reserved} held by requests in flight, this request may cost up to {self.asked}"
        return text


def cap_statuses(totals: LedgerTotals, caps: Caps, cycle: str | None, day: str) -> list[CapStatus]:
    """Every configured cap that applies to this cycle (None: skip cycle caps) and day."""
    scopes: list[tuple[Scope, str, Spend, CapAmount]] = [
        ("day", day, totals.day(day), caps.per_day),
        ("total", "all", totals.total, caps.total),
    ]
    if cycle is not None:
        scopes.insert(0, ("cycle", cycle, totals.cycle(cycle), caps.per_cycle))
    statuses = []
    for scope, key, spend, amount in scopes:
        if amount.tokens is not None:
            statuses.append(_status(scope, key, "tokens", Decimal(spend.tokens), Decimal(amount.tokens)))
        if amount.usd is not None:
            statuses.append(_status(scope, key, "usd", spend.usd, amount.usd))
    return statuses


def _status(scope: Scope, key: str, unit: Unit, spent: Decimal, cap: Decimal) -> CapStatus:
    fraction = float(spent / cap) if cap > 0 else 1.0
    return CapStatus(scope=scope, key=key, unit=unit, spent=spent, cap=cap, fraction=fraction)


class BudgetGuard:
    """Decides refusals and emits each threshold warning once per scope key."""

    def __init__(self, totals: LedgerTotals, caps: Caps, on_event: EventSink) -> None:
        self._totals = totals
        self._caps = caps
        self._on_event = on_event
        self._lock = threading.Lock()
        self._warned: set[tuple[str, str, str, float]] = set()
        self._mark_already_crossed()

    def reserve(self, ledger: Ledger, held: Reservation) -> CapStatus | None:
        """Write `held` to the ledger if it fits under every cap; else the cap it would pass."""
        with ledger.lock:  # no settlement may change the totals between the check and the write
            for status in cap_statuses(self._totals, self._caps, held.cycle, held.day):
                tokens, usd = self._totals.reserved(status.scope, status.key)
                reserved, asked = (
                    (Decimal(tokens), Decimal(held.usage.total_tokens))
                    if status.unit == "tokens"
                    else (usd, held.cost_usd)
                )
                if status.spent + reserved + asked > status.cap:
                    return status.model_copy(update={"reserved": reserved, "asked": asked})
            ledger.append(held, sync=False)  # survives a kill; the settlement's fsync covers it
        return None

    def after_spend(self, cycle: str, run_id: str) -> None:
        """Called after each ledger append: warn when a threshold is crossed for the first time."""
        for status in cap_statuses(self._totals, self._caps, cycle, _today()):
            for threshold in sorted(self._caps.warn_at, reverse=True):
                if status.fraction >= threshold and self._first_time(status, threshold):
                    message = f"LLM budget at {threshold:.0%}: {status.describe()}"
                    log.warning(message)
                    self._on_event(
                        RouteEvent(
                            kind="budget_warning",
                            message=message,
                            run_id=run_id,
                            cycle=cycle,
                            details=_details(status) | {"threshold": threshold},
                        )
                    )
                    break  # one warning per crossing: the highest threshold passed

    def _first_time(self, status: CapStatus, threshold: float) -> bool:
        with self._lock:
            keys = [(status.scope, status.key, status.unit, t) for t in self._caps.warn_at if t <= threshold]
            fresh = (status.scope, status.key, status.unit, threshold) not in self._warned
            self._warned.update(keys)
            return fresh

    def _mark_already_crossed(self) -> None:
        """After a restart, thresholds crossed before it were warned about then; do not repeat."""
        day = _today()
        cycles: list[str | None] = list(self._totals.by_cycle) or [None]
        for cycle in cycles:
            for status in cap_statuses(self._totals, self._caps, cycle, day):
                for threshold in self._caps.warn_at:
                    if status.fraction >= threshold:
                        self._warned.add((status.scope, status.key, status.unit, threshold))


def new_reservation(run_id: str, cycle: str, model: str, stream: bool, worst: Usage, cost: Decimal) -> Reservation:
    return Reservation(
        ts=utc_now(),
        id=uuid.uuid4().hex,
        run_id=run_id,
        cycle=cycle,
        day=_today(),
        model=model,
        stream=stream,
        usage=worst,
        cost_usd=cost,
    )


def refusal_event(status: CapStatus, run_id: str, cycle: str) -> RouteEvent:
    return RouteEvent(
        kind="budget_refused",
        message=f"budget cap reached: {status.describe()}",
        run_id=run_id,
        cycle=cycle,
        details=_details(status),
    )


def _details(status: CapStatus) -> dict[str, str | int | float]:
    return {
        "scope": status.scope,
        "key": status.key,
        "unit": status.unit,
        "spent": str(status.spent),
        "cap": str(status.cap),
        "fraction": round(status.fraction, 4),
    }


def _today() -> str:
    return utc_now().date().isoformat()
