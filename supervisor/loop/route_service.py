"""The LLM route a running supervisor serves its agent, with the scripted model when one is configured.

Started once per `supervisor start` (after recovery, before the agent), stopped in its shutdown:
the route first, so that requests in flight are metered before the model behind it goes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from supervisor.base.errors import ConfigError
from supervisor.loop.context import LoopContext
from supervisor.route.ledger import LEDGER_FILE_NAME, Ledger
from supervisor.route.metering import EventSink
from supervisor.route.server import SOCKET_NAME, LLMRoute
from supervisor.route.upstream import Upstream

if TYPE_CHECKING:
    from supervisor.route.fleet_budget import FleetBudget


class ModelService:
    """The route (and its ledger) and, with `scripted_scenario`, the scripted model it forwards to."""

    def __init__(self, ctx: LoopContext, *, on_event: EventSink) -> None:
        self.instance = ctx.instance
        self.config = ctx.config
        self.on_event = on_event
        self.route: LLMRoute | None = None
        self.fleet: FleetBudget | None = None
        self._scripted: Any = None

    def start(self) -> LLMRoute:
        route_config = self.config.route
        environ = dict(os.environ)
        if self.config.scripted_scenario is not None:
            from scripted_model import ScriptedModelServer

            try:
                self._scripted = ScriptedModelServer(self.scenario_path()).start()
            except (ValueError, OSError) as exc:
                raise ConfigError(
                    f"scripted_scenario {self.scenario_path()} cannot be served: {exc}; "
                    f"fix the path or the file in {self.instance.config_path}"
                ) from exc
            route_config = route_config.model_copy(
                update={"upstream": route_config.upstream.model_copy(update={"base_url": self._scripted.url})}
            )
            environ.setdefault(route_config.upstream.api_key_env, "scripted-model-needs-no-key")
        upstream = Upstream.from_config(route_config.upstream, environ=environ)
        ledger = Ledger.open(self.instance.state / LEDGER_FILE_NAME)
        socket_dir = self.instance.run_dir / "llm"
        try:
            self.fleet = self._fleet_budget()
        except BaseException:
            ledger.close()
            raise
        self.route = LLMRoute(
            route_config, ledger, upstream, self.on_event, socket_path=socket_dir / SOCKET_NAME, fleet=self.fleet
        ).start()
        return self.route

    def _fleet_budget(self) -> FleetBudget | None:
        """With [fleet]: the fleet's caps every request also reserves against (its own small pool)."""
        settings = self.config.fleet
        if not settings.enabled:
            return None
        from supervisor.route.fleet_budget import FleetBudget, FleetCaps  # psycopg: only with a fleet
        from supervisor.route.fleet_pending import PENDING_FILE_NAME
        from supervisor.store.fleet_settings import open_database

        budgets = settings.budgets
        caps = FleetCaps(
            weekly_tokens=budgets.weekly_tokens,
            project_tokens=budgets.project_tokens,
            day_tokens=budgets.day_tokens,
            day_usd=budgets.day_usd,
        )
        # A short wait for a connection: with the database away a request is refused at once, not held.
        quick = settings.model_copy(update={"pool_min": 1, "pool_max": min(settings.pool_max, 4), "pool_wait_s": 3.0})
        db = open_database(quick, self.instance.home)
        try:
            return FleetBudget(
                db, settings.node_name(self.instance.home), caps, self.instance.state / PENDING_FILE_NAME
            ).open()
        except BaseException:
            db.close()
            raise

    def charge_project(self, project: str | None) -> None:
        """With a fleet: charge LLM requests from now on to `project`'s fleet cap too (None between tasks)."""
        if self.fleet is not None:
            self.fleet.charge_project(project)

    def tokens_served(self) -> int:
        """Tokens the route has settled so far (0 before it starts): what a task's budget is counted in."""
        route = self.route
        return route.ledger.totals.total.tokens if route is not None else 0

    def scenario_path(self) -> Path:
        path = Path(self.config.scripted_scenario or "")
        return path if path.is_absolute() else self.instance.home / path

    def stop_route(self) -> None:
        if self.route is not None:
            self.route.stop()
            self.route.ledger.close()
        if self.fleet is not None:
            self.fleet.close()
            self.fleet.db.close()

    def stop_model(self) -> None:
        if self._scripted is not None:
            self._scripted.stop()
