"""Input tokens per agent cycle with a journal of 10 vs 1,000 entries.

The real path: the agent assembles its prompts (bounded memory), the real `anthropic` SDK sends
them to the scripted model, and the scripted model reports usage computed from the request bytes
it received (about 4 characters a token; prompt-cache reads and writes included). The sum of
input + cache read + cache write tokens over the cycle's calls is "input tokens per cycle".
Last line: `context_ratio R (target <= 1.1)`.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent.config import AgentConfig  # noqa: E402
from agent.journal import Journal  # noqa: E402
from agent.llm import LLMClient, build_sdk_client  # noqa: E402
from agent.loop import Agent  # noqa: E402
from agent.registry import default_registry  # noqa: E402
from scripted_model import Scenario, ScriptedModelServer, estimate_tokens  # noqa: E402

GOALS = "# Active Goals\n\n## Summarise the tools\n\nList the tools in agent/tools/ in reports/tools.md.\n"
STEPS = [
    {"content": [{"type": "text", "text": "1. List agent/tools/*.py.\n2. Write reports/tools.md."}]},
    {"content": [{"type": "tool_use", "name": "search_files", "input": {"pattern": "agent/tools/*.py"}}]},
    {
        "content": [
            {
                "type": "tool_use",
                "name": "write_file",
                "input": {"path": "reports/tools.md", "content": "# Tools\n\n- word_count\n"},
            }
        ]
    },
    {"content": [{"type": "text", "text": "Wrote reports/tools.md.\nGOAL STATUS: complete"}]},
    {
        "content": [
            {
                "type": "text",
                "text": "### Summary\nListed tools.\n\n### Lessons learned\n- Globs are enough here.\n\n"
                "### Improvement recommendations\n- None.",
            }
        ]
    },
    {"content": [{"type": "text", "text": "NO CHANGE: nothing worth changing."}]},
]


def fill_journal(journal_dir: Path, entries: int) -> int:
    """Realistic cycle and reflection entries, ~12 a day; returns the journal's size in tokens."""
    moment = [datetime(2026, 1, 1, tzinfo=UTC)]
    journal = Journal(journal_dir, lambda: moment[0])
    for i in range(entries):
        moment[0] += timedelta(hours=2)
        if i % 2 == 0:
            body = (
                f"**Goal:** goal {i // 2}\n\n**Status:** complete\n\n**Tokens:** input 9000 · output 800\n\n### Plan\n\n"
                f"1. Read the files.\n2. Change what goal {i // 2} asks.\n\n### Actions\n\n"
                + '- `read_file` {"path": "agent/loop.py"} → ok: """The nine-step cycle\n' * 6
                + f"\n### Result\n\nGoal {i // 2} done; the report is in reports/goal-{i // 2}.md."
            )
            journal.append("notes", "cycle", body)
        else:
            body = (
                f"### Summary\n\nCycle {i // 2} went as planned.\n\n### Lessons learned\n\n- lesson {i}: check the "
                f"tests before proposing\n- lesson {i}b: keep tool output short\n\n### Improvement recommendations\n\n- none"
            )
            journal.append("reflections", "reflection", body)
    return sum(estimate_tokens(p.read_text()) for p in journal_dir.rglob("*.md"))


def tokens_per_cycle(entries: int) -> tuple[int, int, int]:
    """(input tokens for one cycle, LLM calls, tokens of the whole journal) with `entries` journal entries."""
    root = Path(tempfile.mkdtemp(prefix="ctx-bench-"))
    try:
        shutil.copytree(REPO / "agent" / "tools", root / "agent" / "tools")
        (root / "agent" / "goals").mkdir()
        (root / "agent" / "goals" / "active.md").write_text(GOALS)
        journal_tokens = fill_journal(root / "agent" / "journal", entries)
        with ScriptedModelServer(Scenario(name=f"bench-{entries}", steps=STEPS)) as server:
            config = AgentConfig(workspace=root, outbox=root / "outbox", base_url=server.url)
            llm = LLMClient(config, build_sdk_client(config, env={"ANTHROPIC_API_KEY": "scripted"}))
            report = Agent(config, llm, default_registry(), threading.Event()).cycle()
        return report.usage.prompt_tokens, report.usage.calls, journal_tokens
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    results = {}
    for entries in (10, 1000):
        tokens, calls, journal_tokens = tokens_per_cycle(entries)
        results[entries] = tokens
        print(
            f"journal {entries:>5} entries ({journal_tokens:>7} tokens on disk): {tokens} input tokens per cycle over {calls} calls"
        )
    print(f"context_ratio {results[1000] / results[10]:.2f} (target <= 1.1)")


if __name__ == "__main__":
    main()
