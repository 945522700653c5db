"""One node's side of the fleet's budget: reserve each request against the fleet's caps, settle it, heartbeat.

The route reserves a request's worst case in its local ledger and then here (fleet_caps.py, one short
transaction against PostgreSQL), and settles both to the real usage after. This node's route is one
*holder*: a name unique to this process, heartbeated every `heartbeat_s`; a holder whose heartbeat is
older than `lease_s` is swept by whichever node notices first, its reservations charged at their worst
case. A settlement the database cannot take now is kept in a local file (fleet_pending.py) and retried
until it lands. With the database unreachable, requests are refused (FleetUnavailable), never
forwarded unmetered; the background thread reconnects, and the route serves again by itself.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg

from supervisor.base.errors import ConfigError
from supervisor.base.pg.errors import DatabaseError
from supervisor.base.pg.pool import Database
from supervisor.route import fleet_caps
from supervisor.route.fleet_caps import CapAsk, CapBelowUse, CapState, Held, HolderGone
from supervisor.route.fleet_limits import FleetCaps, FleetUnavailable
from supervisor.route.fleet_pending import PendingFile, PendingSettlement

__all__ = ["FleetBudget", "FleetCaps", "FleetUnavailable"]

log = logging.getLogger("ouroboros.route")

_QUIET_AFTER_FAILURE_S = 1.0  # after a failed call, refuse at once for this long instead of waiting on the pool


class FleetBudget:
    """Start with `open()`; the route calls `reserve`, then `settle` or `release`, per request; `close()`."""

    def __init__(
        self,
        db: Database,
        node: str,
        caps: FleetCaps,
        pending_path: Path,
        *,
        lease_s: float = 60.0,
        heartbeat_s: float = 10.0,
    ) -> None:
        if heartbeat_s * 2 > lease_s:
            raise ConfigError(f"the budget heartbeat ({heartbeat_s}s) must be at most half its lease ({lease_s}s)")
        self.db = db
        self.node = node
        self.caps = caps
        self.holder = f"{node}:{uuid.uuid4().hex[:12]}"
        self.lease_s = lease_s
        self.heartbeat_s = heartbeat_s
        self.pending = PendingFile(pending_path)
        self.reserve_ms: deque[float] = deque(maxlen=100_000)  # time each reservation took (benchmarks)
        self.late = 0  # settlements refused because a sweep had charged their reservation first
        self._project: str | None = None
        self._run_projects: dict[str, str] = {}  # runs charged to a project of their own (charge_run)
        self._registered = False
        self._offset = timedelta(0)  # the database's clock minus ours: periods follow the database's
        self._quiet_until = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def open(self) -> FleetBudget:
        """Register, check the caps against what is spent, land pending settlements, sweep, start heartbeating.

        An unreachable database is not an error here (requests are refused until it answers); a cap
        set below what its period already spent and reserved is (ConfigError, nothing changed).
        """
        try:
            self._register()
            self.apply_caps()
            self.tick(own_leftovers=True)
        except CapBelowUse as exc:
            raise ConfigError(f"[fleet.budgets]: {exc}") from None
        except (DatabaseError, psycopg.Error) as exc:
            log.warning("fleet budget: %s; LLM requests are refused until the database answers", exc)
        self._thread = threading.Thread(target=self._run, name="fleet-budget", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            self._land_pending()
            if fleet_caps.drop_holder(self.db, self.holder):
                self._registered = False
        except (DatabaseError, psycopg.Error) as exc:
            log.warning("fleet budget: %s; what is left is settled at its worst case by a sweep", exc)

    def _run(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                self.tick()
            except Exception:  # the heartbeat must outlive any failure; the next tick tries again
                log.exception("fleet budget: heartbeat failed")

    def tick(self, *, own_leftovers: bool = False) -> None:
        """Heartbeat (registering again if swept), land pending settlements, sweep dead holders.

        `own_leftovers`: also sweep this node's earlier holders (its processes before a restart).
        """
        try:
            if self._quiet_until:  # the last call failed: drop the connections an outage broke, all at once
                self.db.check()
            if not self._registered:
                self._register()
            else:
                now = fleet_caps.heartbeat(self.db, self.holder)
                if now is None:
                    log.warning(
                        "fleet budget: holder %s was swept (no heartbeat within its lease); registering again",
                        self.holder,
                    )
                    self._register()
                else:
                    self._offset = now - datetime.now(UTC)
            self._land_pending()
            swept = fleet_caps.sweep(self.db, self.node, node=self.node if own_leftovers else None, keep=self.holder)
            for holder, count in swept.items():
                log.warning(
                    "fleet budget: holder %s stopped heartbeating; %d reservation(s) charged at worst case",
                    holder,
                    count,
                )
            self._quiet_until = 0.0
        except (DatabaseError, psycopg.Error) as exc:
            self._failed(exc)

    def _register(self) -> None:
        now = fleet_caps.register(self.db, self.holder, self.node, self.lease_s)
        self._offset = now - datetime.now(UTC)
        self._registered = True

    def _failed(self, exc: DatabaseError | psycopg.Error) -> None:
        self._quiet_until = time.monotonic() + _QUIET_AFTER_FAILURE_S
        log.warning("fleet budget: %s", exc)

    # -- caps ----------------------------------------------------------------------------------

    def charge_project(self, project: str | None) -> None:
        """Charge requests from now on to `project`'s cap too (the task running now), or to none."""
        with self._lock:
            self._project = project

    def charge_run(self, run_id: str, project: str | None) -> None:
        """Charge `run_id`'s requests to `project`'s cap instead of the running task's (None: as before);
        a node's task analysis is charged to the analysed task's project so."""
        with self._lock:
            if project is None:
                self._run_projects.pop(run_id, None)
            else:
                self._run_projects[run_id] = project

    def asks(self, tokens: int, usd: Decimal, run_id: str | None = None) -> list[CapAsk]:
        """The caps a request of this worst case (made by `run_id`) reserves against now."""
        now = datetime.now(UTC) + self._offset
        year, week, _ = now.isocalendar()
        day = now.date().isoformat()
        caps = self.caps
        with self._lock:
            project = self._run_projects.get(run_id, self._project) if run_id is not None else self._project
        found: list[CapAsk] = []
        if caps.weekly_tokens is not None:
            found.append(CapAsk("week", f"{year}-W{week:02d}", "tokens", Decimal(caps.weekly_tokens), Decimal(tokens)))
        if caps.day_tokens is not None:
            found.append(CapAsk("day", day, "tokens", Decimal(caps.day_tokens), Decimal(tokens)))
        if caps.day_usd is not None:
            found.append(CapAsk("day", day, "usd", caps.day_usd, usd))
        if caps.project_tokens is not None and project is not None:
            found.append(CapAsk("project", project, "tokens", Decimal(caps.project_tokens), Decimal(tokens)))
        return found

    def apply_caps(self) -> list[CapState]:
        """Set the current week's and day's caps, and every project's, to this node's; CapBelowUse when
        one is below what is already spent and reserved (nothing changed then)."""
        asks = self.asks(0, Decimal(0))
        if self.caps.project_tokens is not None:
            known = {a.id for a in asks}
            for state in fleet_caps.states(self.db):
                if state.scope == "project" and state.unit == "tokens" and state.id not in known:
                    asks.append(CapAsk("project", state.key, "tokens", Decimal(self.caps.project_tokens), Decimal(0)))
        return fleet_caps.set_caps(self.db, asks) if asks else []

    # -- per request ---------------------------------------------------------------------------

    def reserve(self, reservation: str, run_id: str, model: str, tokens: int, usd: Decimal) -> CapState | None:
        """Hold a request's worst case against the fleet's caps: None when held, else the cap it would pass.

        FleetUnavailable when the database cannot be consulted: the request must be refused.
        """
        if time.monotonic() < self._quiet_until:
            raise FleetUnavailable(
                f"the fleet's budget database {self.db.where} did not answer a moment ago; retry shortly"
            )
        started = time.perf_counter()
        held = Held(reservation, self.holder, tokens, usd, run_id, model)
        try:
            if not self._registered:
                self._register()
            try:
                refused = fleet_caps.reserve(self.db, held, self.asks(tokens, usd, run_id))
            except HolderGone:
                self._register()
                refused = fleet_caps.reserve(self.db, held, self.asks(tokens, usd, run_id))
        except (DatabaseError, psycopg.Error) as exc:  # psycopg.Error: one the pool does not explain (a bug)
            self._failed(exc)
            raise FleetUnavailable(str(exc)) from None
        except HolderGone as exc:  # swept again between registering and reserving: a stalled node
            raise FleetUnavailable(str(exc)) from None
        self.reserve_ms.append((time.perf_counter() - started) * 1000)
        return refused

    def settle(self, reservation: str, tokens: int, usd: Decimal) -> None:
        """Settle to real usage; kept locally and retried when the database cannot take it now."""
        self._end(PendingSettlement(id=reservation, how="spent", tokens=tokens, usd=usd))

    def release(self, reservation: str) -> None:
        """End a reservation that spent nothing (refused or failed upstream before any usage)."""
        self._end(PendingSettlement(id=reservation, how="released", tokens=0, usd=Decimal(0)))

    def _end(self, item: PendingSettlement) -> None:
        try:
            self._land(item)
            return
        except (DatabaseError, psycopg.Error) as exc:
            self._failed(exc)
        try:
            self.pending.add(item)
        except OSError as exc:
            log.error(
                "fleet budget: settlement %s kept in memory only (%s); a restart charges it at worst case", item.id, exc
            )

    def _land(self, item: PendingSettlement) -> bool:
        landed = fleet_caps.settle(self.db, item.id, item.tokens, item.usd, how=item.how, by=self.node)
        if not landed:
            self.late += 1
            log.warning(
                "fleet budget: reservation %s was already ended (by a sweep, at its worst case, or by an earlier try); this settlement changes nothing",
                item.id,
            )
        return landed

    def _land_pending(self) -> None:
        landed = []
        try:
            for item in self.pending.items():
                self._land(item)
                landed.append(item.id)
        finally:
            self.pending.done(landed)

    def statuses(self) -> list[CapState]:
        """The caps this node's requests reserve against now, as the database holds them."""
        return fleet_caps.states(self.db, [a.id for a in self.asks(0, Decimal(0))])
