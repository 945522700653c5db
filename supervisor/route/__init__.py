"""The supervisor's LLM route: the agent's only way to the model, holding the key and the budget.

config = Instance.locate(home).config().route      # [route] in ouroboros.toml
ledger = Ledger.open(state_dir / LEDGER_FILE_NAME)
route = LLMRoute(config, ledger, Upstream.from_config(config.upstream), on_event=journal,
                 socket_path=socket_dir / "llm.sock").start()
credential = route.issue_credential(run_id)   # env: route.agent_env(credential)
"""

from supervisor.route.config import (
    CapAmount,
    Caps,
    RequestPolicy,
    RouteConfig,
    RouteLimits,
    ServerToolPrice,
    UpstreamConfig,
)
from supervisor.route.ledger import LEDGER_FILE_NAME, Ledger, LedgerEntry, LedgerError
from supervisor.route.metering import CapStatus, RouteEvent, cap_statuses
from supervisor.route.pricing import ModelPrice, PricingTable, Usage
from supervisor.route.server import AGENT_SOCKET_DIR, LLMRoute
from supervisor.route.upstream import Upstream

__all__ = [
    "AGENT_SOCKET_DIR",
    "CapAmount",
    "CapStatus",
    "Caps",
    "LEDGER_FILE_NAME",
    "LLMRoute",
    "Ledger",
    "LedgerEntry",
    "LedgerError",
    "ModelPrice",
    "PricingTable",
    "RequestPolicy",
    "RouteConfig",
    "RouteEvent",
    "RouteLimits",
    "ServerToolPrice",
    "Upstream",
    "UpstreamConfig",
    "Usage",
    "cap_statuses",
]
