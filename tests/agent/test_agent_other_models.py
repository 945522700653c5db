"""The demo cycle against a server like Ollama, llama.cpp or vLLM: tool_choice ignored, usage approximate or
missing, through the real `anthropic` SDK and the supervisor's real route, metered into a real ledger."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import DEMO_GOALS, SCENARIOS, agent_env, make_workspace, run_agent

from scripted_model import Scenario, ScriptedModelServer
from scripted_model.served import read_served
from supervisor.route import Ledger, LLMRoute, RouteConfig, Upstream
from supervisor.route.ledger import read_entries

LOCAL_MODEL = "qwen3-coder:30b"  # an Ollama-style name: the route must be told its (zero) price
CAP_TOKENS = 1_000_000
NOT_NOW = "no tools can be used in this step"


class Setup:
    """A compat scripted model, a route in front of it, and the workspace of one demo cycle."""

    def __init__(self, root: Path, scenario: Scenario) -> None:
        self.served_path = root / "served.jsonl"
        self.ledger_path = root / "llm-ledger.jsonl"
        self.model = ScriptedModelServer(scenario, served_log=self.served_path).start()
        config = RouteConfig.model_validate(
            {
                "upstream": {"base_url": self.model.url},
                "policy": {"models": [LOCAL_MODEL]},
                "pricing": {
                    "models": {LOCAL_MODEL: {"input": "0", "output": "0", "cache_write": "0", "cache_read": "0"}}
                },
                "caps": {"per_cycle": {"tokens": CAP_TOKENS}, "per_day": {}, "total": {}},
            }
        )
        self.ledger = Ledger.open(self.ledger_path)
        upstream = Upstream.from_config(config.upstream, environ={"ANTHROPIC_API_KEY": "ollama"})
        self.route = LLMRoute(config, self.ledger, upstream, tcp_port=0).start()
        self.workspace = make_workspace(root / "ws", DEMO_GOALS)
        (self.workspace / "src").mkdir()
        (self.workspace / "src/app.py").write_text("def main():\n    pass  # TODO: handle errors\n")

    def run_cycle(self) -> Any:
        credential = self.route.issue_credential("run-other-models")
        env = agent_env(self.workspace, self.route.url_tcp, ANTHROPIC_API_KEY=credential, OUROBOROS_MODEL=LOCAL_MODEL)
        return run_agent(self.workspace, "cycle", "--once", env=env)

    def close(self) -> None:
        self.route.stop()
        self.ledger.close()
        self.model.stop()


@pytest.fixture
def other_model(tmp_path: Path) -> Iterator[Any]:
    setups: list[Setup] = []

    def start(scenario: Scenario) -> Setup:
        setups.append(Setup(tmp_path, scenario))
        return setups[-1]

    yield start
    for setup in setups:
        setup.close()


def demo_scenario(usage: str, steps: list[dict[str, Any]] | None = None) -> Scenario:
    data = json.loads((SCENARIOS / "demo.json").read_text())
    data["compat"] = {"ignore_tool_choice": True, "usage": usage, "seed": 7}
    if steps is not None:
        data["steps"] = steps
    return Scenario.model_validate(data)


def total(usage: dict[str, int]) -> int:
    return sum(usage.values())


@pytest.mark.parametrize("usage", ["missing", "approximate"])
def test_the_demo_cycle_completes_and_the_ledger_holds(other_model, usage):
    setup = other_model(demo_scenario(usage))
    result = setup.run_cycle()

    assert result.returncode == 0, result.stderr
    assert "complete; proposals:" in result.stdout
    served = read_served(setup.served_path)
    entries, torn = read_entries(setup.ledger_path)
    assert len(served) == len(entries) == 11 and not torn
    assert setup.ledger.totals.open == {}
    assert setup.ledger.totals.total.tokens == sum(e.usage.total_tokens for e in entries) <= CAP_TOKENS
    by_id = {line["id"]: line for line in served}
    for entry in entries:
        line = by_id[entry.message_id]
        if usage == "missing":
            assert line["reported"] is None
            assert entry.usage.total_tokens >= total(line["usage"])  # never less than served
            assert entry.usage.output_tokens == 4096  # no count: max_tokens, the reserved worst case
        else:  # the server's own (approximate) count, as reported: two counts, no cache fields
            assert entry.usage.model_dump() == {
                **line["reported"],
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            }
            assert line["reported"] != {k: line["usage"][k] for k in ("input_tokens", "output_tokens")}
    journal = "".join(p.read_text() for p in (setup.workspace / "agent/journal").rglob("notes.md"))
    assert "**Status:** complete" in journal


def test_a_tool_call_while_planning_is_refused_not_run(other_model):
    """A server that ignores tool_choice none lets the model call a tool while planning: nothing runs."""
    steps = json.loads((SCENARIOS / "demo.json").read_text())["steps"]
    sneaky = {
        "match": {"contains": "## Step: plan"},
        "content": [
            {"type": "text", "text": "Let me write the plan down first."},
            {"type": "tool_use", "name": "write_file", "input": {"path": "reports/planned.md", "content": "x"}},
        ],
    }
    after_refusal = {**steps[0], "match": {"tool_result_contains": NOT_NOW}}
    setup = other_model(demo_scenario("approximate", [sneaky, after_refusal, *steps[1:]]))
    result = setup.run_cycle()

    assert result.returncode == 0, result.stderr
    assert "complete; proposals:" in result.stdout
    assert not (setup.workspace / "reports/planned.md").exists()
    requests = setup.model.requests
    assert len(requests) == 12 and requests[0]["tool_choice"] == {"type": "none"}
    refusal = [b for b in requests[1]["messages"][-1]["content"] if b.get("type") == "tool_result"]
    assert refusal[0]["is_error"] is True and NOT_NOW in refusal[0]["content"]
    assert requests[1]["tool_choice"] == {"type": "none"}  # still planning
    assert "## Step: execute" in json.dumps(requests[2]["messages"][-1])


# -- one step at a time, straight against the compat model -----------------------------------------


def conversation(server: ScriptedModelServer, workspace: Path):
    import threading

    from agent.config import AgentConfig
    from agent.conversation import Conversation
    from agent.llm import LLMClient, build_sdk_client
    from agent.registry import ToolContext, default_registry

    config = AgentConfig(workspace=workspace, base_url=server.url, outbox=workspace.parent / "outbox", max_retries=0)
    llm = LLMClient(config, build_sdk_client(config, env={"ANTHROPIC_API_KEY": "scripted"}))
    stop = threading.Event()
    ctx = ToolContext(workspace=workspace, outbox=config.outbox, stop=stop)
    return Conversation(llm, default_registry(), ctx, "system", max_turns=6, stop=stop)


WRITE = {"type": "tool_use", "name": "write_file", "input": {"path": "notes/x.md", "content": "x"}}


def test_tool_calls_run_whatever_the_stop_reason_says(serve, workspace):
    # some servers end a turn with tool calls but say end_turn (or nothing)
    server = serve(
        demo_scenario(
            "missing",
            [
                {"content": [WRITE], "stop_reason": "end_turn"},
                {"content": [{"type": "text", "text": "done"}], "match": {"tool_result_contains": "wrote"}},
            ],
        )
    )
    outcome = conversation(server, workspace).step("go", "execute")
    assert (workspace / "notes/x.md").read_text() == "x"
    assert outcome.text == "done" and outcome.ended == "end_turn" and [a.ok for a in outcome.actions] == [True]
    assert outcome.usage.calls == 2 and outcome.usage.input_tokens == 0  # no usage reported: counted as 0 here


def test_a_model_that_keeps_calling_tools_in_a_tool_less_step_is_cut_off(serve, workspace):
    with_text = {"content": [{"type": "text", "text": "my plan"}, WRITE]}
    server = serve(demo_scenario("approximate", [with_text, with_text, {"content": [{"type": "text", "text": "?"}]}]))
    talk = conversation(server, workspace)
    outcome = talk.step("plan", "execute", allow_tools=False)
    assert not (workspace / "notes").exists() and server.steps_served == 2  # one refusal, one more ask, no third
    assert outcome.text == "my plan" and [a.ok for a in outcome.actions] == [False]
    assert talk.messages[-1] == {"role": "assistant", "content": [{"type": "text", "text": "my plan"}]}


def test_a_tool_call_cut_off_by_max_tokens_is_not_run(serve, workspace):
    server = serve(
        demo_scenario("exact", [{"content": [{"type": "text", "text": "half"}, WRITE], "stop_reason": "max_tokens"}])
    )
    outcome = conversation(server, workspace).step("go", "execute")
    assert not (workspace / "notes").exists() and outcome.ended == "max_tokens" and outcome.actions == []
