"""The LLM route a running supervisor serves its agent, with the scripted model when one is configured.

Started once per `supervisor start` (after recovery, before the agent), stopped in its shutdown:
the route first, so that requests in flight are metered before the model behind it goes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from supervisor.base.errors import ConfigError
from supervisor.loop.context import LoopContext
from supervisor.route.ledger import LEDGER_FILE_NAME, Ledger
from supervisor.route.metering import EventSink
from supervisor.route.server import SOCKET_NAME, LLMRoute
from supervisor.route.upstream import Upstream


class ModelService:
    """The route (and its ledger) and, with `scripted_scenario`, the scripted model it forwards to."""

    def __init__(self, ctx: LoopContext, *, on_event: EventSink) -> None:
        self.instance = ctx.instance
        self.config = ctx.config
        self.on_event = on_event
        self.route: LLMRoute | None = None
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
        self.route = LLMRoute(
            route_config, ledger, upstream, self.on_event, socket_path=socket_dir / SOCKET_NAME
        ).start()
        return self.route

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

    def stop_model(self) -> None:
        if self._scripted is not None:
            self._scripted.stop()
