"""Fixtures for the LLM route: a scripted upstream, a route in front of it, its events and ledger."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from route_helpers import MODEL, REAL_KEY, FakeUpstream, RouteHarness

from scripted_model import Scenario, ScriptedModelServer
from supervisor.route import Ledger, LLMRoute, RouteConfig, RouteEvent, Upstream


@pytest.fixture
def scripted() -> Iterator[Callable[[Scenario], ScriptedModelServer]]:
    servers: list[ScriptedModelServer] = []

    def start(script: Scenario) -> ScriptedModelServer:
        server = ScriptedModelServer(script).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture
def make_route(state_dir: Path, tmp_path: Path) -> Iterator[Callable[..., RouteHarness]]:
    """Start a route forwarding to `upstream_url`; config given as a dict merged over the defaults."""
    started: list[tuple[LLMRoute, Ledger]] = []

    def start(upstream_url: str, config: dict[str, Any] | None = None, *, socket: bool = True) -> RouteHarness:
        data = {"upstream": {"base_url": upstream_url}, "policy": {"models": [MODEL]}, **(config or {})}
        route_config = RouteConfig.model_validate(data)
        ledger_path = state_dir / "llm-ledger.jsonl"
        ledger = Ledger.open(ledger_path)
        upstream = Upstream.from_config(route_config.upstream, environ={"ANTHROPIC_API_KEY": REAL_KEY})
        events: list[RouteEvent] = []
        socket_path = tmp_path / f"sock{len(started)}" / "llm.sock" if socket else None
        route = LLMRoute(route_config, ledger, upstream, events.append, socket_path=socket_path, tcp_port=0).start()
        started.append((route, ledger))
        return RouteHarness(route, ledger_path, events)

    yield start
    for route, ledger in started:
        route.stop()
        ledger.close()


@pytest.fixture
def header_recorder() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream()
    yield upstream
    upstream.close()


@pytest.fixture
def slow_upstream() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream(delay_s=30)
    yield upstream
    upstream.close()
