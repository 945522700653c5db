"""A full cycle in-process through the real anthropic SDK against the scripted model (over a Unix socket)."""

import threading

import pytest

from agent.errors import LLMError
from agent.journal import Journal
from agent.llm import LLMClient, build_sdk_client
from agent.loop import Agent, reflection_sections
from agent.registry import default_registry
from scripted_model import Scenario, ScriptedModelServer

STEPS = [
    {"content": [{"type": "text", "text": "1. Write the greeting file."}], "match": {"contains": "## Goal: Greet"}},
    {"content": [{"type": "tool_use", "name": "write_file", "input": {"path": "out/hello.txt", "content": "hello"}}]},
    {
        "content": [{"type": "tool_use", "name": "write_file", "input": {"path": "agent/hack.py", "content": "x"}}],
        "match": {"tool_result_contains": "wrote"},
    },
    {
        "content": [{"type": "text", "text": "Wrote out/hello.txt.\nGOAL STATUS: complete"}],
        "match": {"tool_result_contains": "refused"},
    },
    {
        "content": [
            {
                "type": "text",
                "text": "### Summary\nGreeted.\n\n### Lessons learned\n- Small goals finish fast.\n\n### Improvement recommendations\n- None.",
            }
        ]
    },
    {
        "content": [
            {
                "type": "tool_use",
                "name": "write_file",
                "input": {"path": "agent/tools/greet.py", "content": "# reflection-phase edit\n"},
            }
        ]
    },
    {
        "content": [
            {"type": "tool_use", "name": "propose", "input": {"why": "Add a greet tool.", "summary": "Add greet"}}
        ]
    },
    {"content": [{"type": "text", "text": "Proposed."}], "match": {"tool_result_contains": "proposal"}},
]


@pytest.fixture
def server(short_dir):
    with ScriptedModelServer(Scenario(name="unit", steps=STEPS), socket_path=short_dir / "llm.sock") as srv:
        yield srv


def test_one_cycle_end_to_end(config, server):
    (config.workspace / "agent/goals/active.md").write_text(
        "# Active Goals\n\n## Greet\nWrite hello to out/hello.txt.\n"
    )
    config = config.model_copy(update={"llm_socket": server.socket_path})
    llm = LLMClient(config, build_sdk_client(config, env={"ANTHROPIC_API_KEY": "scripted"}))
    report = Agent(config, llm, default_registry(), threading.Event()).cycle()

    assert report.completed and report.proposals and server.steps_served == len(STEPS)
    assert (config.workspace / "out/hello.txt").read_text() == "hello"
    assert not (config.workspace / "agent/hack.py").exists()  # refused while executing
    assert (config.workspace / "agent/tools/greet.py").exists()  # allowed while reflecting
    assert "## Greet" in (config.workspace / "agent/goals/completed.md").read_text()
    assert "## Greet" not in (config.workspace / "agent/goals/active.md").read_text()
    assert report.usage.calls == len(STEPS) and report.usage.cache_read_input_tokens > 0
    first = server.requests[0]
    assert first["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert first["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert first["tool_choice"] == {"type": "none"}  # no tools while planning


def test_reflection_always_has_the_three_sections():
    text = reflection_sections("### Summary\nok\n### Improvement recommendations\n- more")
    assert text.index("### Summary") < text.index("### Lessons learned") < text.index("### Improvement recommendations")
    assert "(not given)" in text
    assert "free text" in reflection_sections("free text")


BAD_REQUEST = {"error": {"status": 400, "type": "invalid_request_error", "message": "scripted refusal"}}
QUIET_CYCLE = [
    {"content": [{"type": "text", "text": "1. Nothing."}]},
    {"content": [{"type": "text", "text": "Nothing to do.\nGOAL STATUS: complete"}]},
    {
        "content": [
            {
                "type": "text",
                "text": "### Summary\nQuiet.\n\n### Lessons learned\n- None.\n\n### Improvement recommendations\n- None.",
            }
        ]
    },
    {"content": [{"type": "text", "text": "NO CHANGE"}]},
]


def _agent_on(config, server):
    config = config.model_copy(
        update={"llm_socket": server.socket_path, "error_backoff_s": 0.01, "max_llm_failures": 2}
    )
    return Agent(
        config,
        LLMClient(config, build_sdk_client(config, env={"ANTHROPIC_API_KEY": "k"})),
        default_registry(),
        threading.Event(),
    )


def test_run_journals_a_model_failure_and_goes_on(config, short_dir):
    with ScriptedModelServer(Scenario(steps=[BAD_REQUEST, *QUIET_CYCLE]), socket_path=short_dir / "a.sock") as server:
        assert _agent_on(config, server).run(max_cycles=2) == 2
        assert server.steps_served == 5
    kinds = [e.kind for e in Journal(config.journal_dir).entries()]
    assert kinds == ["error", "cycle", "reflection"]


def test_run_gives_up_after_repeated_model_failures(config, short_dir):
    with ScriptedModelServer(Scenario(steps=[BAD_REQUEST] * 3), socket_path=short_dir / "b.sock") as server:
        with pytest.raises(LLMError, match="HTTP 400: .*scripted refusal"):
            _agent_on(config, server).run()
        assert server.steps_served == 2
    errors = [e.body for e in Journal(config.journal_dir).entries() if e.kind == "error"]
    assert [b.split(":**")[0] for b in errors] == ["**LLM failure 1 in a row", "**LLM failure 2 in a row"]


def test_tool_turns_per_step_are_capped(config, short_dir):
    looping = {"content": [{"type": "tool_use", "name": "search_files", "input": {"pattern": "*"}}]}
    steps = [QUIET_CYCLE[0], looping, looping, looping, *QUIET_CYCLE[2:]]
    with ScriptedModelServer(Scenario(steps=steps), socket_path=short_dir / "c.sock") as server:
        agent = _agent_on(config.model_copy(update={"max_turns": 3}), server)
        report = agent.cycle()
    assert not report.completed and len(report.actions) == 3
    assert "step ended: turn_cap" in report.result
    notes = next(e for e in Journal(config.journal_dir).entries() if e.kind == "cycle")
    assert "**Status:** incomplete" in notes.body


def test_a_cut_off_tool_call_is_not_replayed(config, short_dir):
    cut_off = {
        "content": [
            {"type": "text", "text": "Writing"},
            {"type": "tool_use", "name": "write_file", "input": {"path": "x"}},
        ],
        "stop_reason": "max_tokens",
    }
    steps = [QUIET_CYCLE[0], cut_off, *QUIET_CYCLE[2:]]
    with ScriptedModelServer(Scenario(steps=steps), socket_path=short_dir / "d.sock") as server:
        report = _agent_on(config, server).cycle()
        replayed = server.requests[2]["messages"][3]
    assert not report.completed and report.actions == [] and "max_tokens" in report.result
    assert replayed == {"role": "assistant", "content": [{"type": "text", "text": "Writing"}]}
