"""The agent behind the real route: past a cap it idles and journals, never crash-loops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from scripted_model import ScriptedModelServer
from supervisor.route.config import CapAmount, Caps, RequestPolicy, RouteConfig, UpstreamConfig
from supervisor.route.ledger import Ledger, read_entries
from supervisor.route.server import LLMRoute
from supervisor.route.upstream import Upstream

from .conftest import scenario

REPO = Path(__file__).resolve().parents[2]


def test_agent_idles_at_the_cap_and_labels_every_call_with_its_cycle(tmp_path):
    workspace = tmp_path / "workspace"
    (workspace / "agent" / "goals").mkdir(parents=True)
    (workspace / "agent" / "journal").mkdir()
    (workspace / "agent" / "goals" / "active.md").write_text("# Active Goals\n")
    events = []
    with ScriptedModelServer(scenario("idle_loop.json")) as model:
        # The route reserves each request's worst case (its size + overhead + max_tokens 4096), so
        # the cap leaves room for a few calls before the refusal this test is about.
        config = RouteConfig(
            upstream=UpstreamConfig(base_url=model.url),
            caps=Caps(total=CapAmount(tokens=60000), per_cycle=CapAmount(), per_day=CapAmount()),
            policy=RequestPolicy(models=["claude-sonnet-5-5"]),
        )
        ledger = Ledger.open(tmp_path / "ledger.jsonl")
        route = LLMRoute(config, ledger, Upstream(model.url, "real-key"), events.append, tcp_port=0).start()
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "OUROBOROS_"))}
            env.update(
                PYTHONPATH=str(REPO),
                PYTHONSAFEPATH="1",
                OUROBOROS_WORKSPACE=str(workspace),
                OUROBOROS_OUTBOX=str(tmp_path / "outbox"),
                ANTHROPIC_BASE_URL=route.url_tcp,
                ANTHROPIC_API_KEY=route.issue_credential("run-1"),
                OUROBOROS_MODEL="claude-sonnet-5-5",
            )
            agent = subprocess.Popen(
                [sys.executable, "-m", "agent", "run"],
                cwd=workspace,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not any(e.kind == "budget_refused" for e in events):
                time.sleep(0.1)
            time.sleep(2)  # long enough for a crash loop to show
            assert agent.poll() is None, agent.communicate()[1]
            agent.send_signal(signal.SIGTERM)
            _, err = agent.communicate(timeout=30)
        finally:
            route.stop()
            ledger.close()
    assert agent.returncode == 0, err
    assert any(e.kind == "budget_refused" for e in events)
    notes = "\n".join(p.read_text() for p in (workspace / "agent" / "journal").rglob("notes.md"))
    assert "Spending cap reached" in notes
    entries, _ = read_entries(tmp_path / "ledger.jsonl")
    assert entries and all(entry.cycle not in ("", "-", "none") for entry in entries)
    assert len({entry.cycle for entry in entries}) >= 2  # a new id per cycle
    assert sum(e.kind == "budget_refused" for e in events) <= 3  # idling, not hammering the route
