"""Tokens sent per cycle stay flat as the journal grows (measured by what the scripted model received)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from conftest import SCENARIOS, make_workspace

from agent.config import AgentConfig
from agent.journal import Journal
from agent.llm import LLMClient, build_sdk_client
from agent.loop import Agent
from agent.registry import default_registry


def _cycle_prompt_tokens(tmp_path, serve, entries: int) -> int:
    ws = make_workspace(tmp_path / f"ws{entries}")
    moment = [datetime(2026, 1, 1, tzinfo=UTC)]
    journal = Journal(ws / "agent/journal", lambda: moment[0])
    for i in range(entries):
        moment[0] += timedelta(hours=1)
        journal.append(
            "notes" if i % 2 else "reflections",
            "cycle" if i % 2 else "reflection",
            f"### Lessons learned\n- lesson {i}\n\n" + f"entry {i} " * 60,
        )
    server = serve(SCENARIOS / "idle_loop.json")
    config = AgentConfig(workspace=ws, outbox=tmp_path / "outbox", base_url=server.url)
    llm = LLMClient(config, build_sdk_client(config, env={"ANTHROPIC_API_KEY": "scripted"}))
    report = Agent(config, llm, default_registry(), threading.Event()).cycle()
    assert report.usage.calls == 4
    return report.usage.prompt_tokens


def test_prompt_tokens_per_cycle_do_not_grow_with_the_journal(tmp_path, serve):
    small = _cycle_prompt_tokens(tmp_path, serve, 10)
    large = _cycle_prompt_tokens(tmp_path, serve, 500)
    assert large <= 1.1 * small, (small, large)
