"""The scripted model server: the real SDK against it (plain, streamed, over a Unix socket), errors, retries."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import anthropic
import httpx2
import pytest
from conftest import SCENARIOS, agent_env, run_agent

from agent.config import AgentConfig
from agent.errors import LLMError
from agent.llm import LLMClient, build_sdk_client
from scripted_model import Scenario, ScenarioError, load_scenario

HELLO = {
    "content": [
        {"type": "text", "text": "Hello from the scripted model, streamed in several chunks."},
        {"type": "tool_use", "name": "read_file", "input": {"path": "README.md"}},
    ]
}
ASK = {"model": "claude-test", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def short_dir():
    path = Path(tempfile.mkdtemp(prefix="ouro-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_plain_and_streamed_answers_match(serve):
    server = serve(Scenario(steps=[HELLO, HELLO]))
    client = anthropic.Anthropic(base_url=server.url, api_key="k")
    plain = client.messages.create(**ASK)
    with client.messages.stream(**ASK) as stream:
        events = [event.type for event in stream]
        streamed = stream.get_final_message()
    assert plain.stop_reason == streamed.stop_reason == "tool_use"
    assert [b.type for b in streamed.content] == [b.type for b in plain.content] == ["text", "tool_use"]
    assert streamed.content[1].id == "toolu_0001_1" and plain.content[1].id == "toolu_0000_1"
    assert streamed.content[0].text == plain.content[0].text and streamed.content[1].input == {"path": "README.md"}
    assert (
        streamed.usage.output_tokens == plain.usage.output_tokens
        and streamed.usage.input_tokens == plain.usage.input_tokens
    )
    assert events[0] == "message_start" and "content_block_delta" in events and events[-1] == "message_stop"


def test_the_sdk_retries_overloaded_and_rate_limited(serve, tmp_path):
    server = serve(
        Scenario(
            steps=[
                {"error": {"status": 529, "type": "overloaded_error", "message": "Overloaded"}},
                {"error": {"status": 429, "type": "rate_limit_error", "message": "Slow down"}},
                {"error": {"status": 500, "type": "api_error", "message": "Oops"}},
                HELLO,
            ]
        )
    )
    config = AgentConfig(workspace=tmp_path, outbox=tmp_path / "o", base_url=server.url, max_retries=3)
    reply = LLMClient(config, build_sdk_client(config, env={"ANTHROPIC_API_KEY": "k"})).complete(
        "sys", [], ASK["messages"]
    )
    assert reply.text.startswith("Hello") and server.steps_served == 4


def test_retries_give_up_with_a_clear_error(serve, tmp_path):
    server = serve(
        Scenario(steps=[{"error": {"status": 529, "type": "overloaded_error", "message": "Overloaded"}}] * 3)
    )
    config = AgentConfig(workspace=tmp_path, outbox=tmp_path / "o", base_url=server.url, max_retries=2)
    with pytest.raises(LLMError, match=r"HTTP 529 \(after retries\)"):
        LLMClient(config, build_sdk_client(config, env={"ANTHROPIC_API_KEY": "k"})).complete("sys", [], ASK["messages"])


def test_unix_socket_route_runs_a_whole_cycle(serve, workspace, short_dir):
    """As in the container: network none, OUROBOROS_LLM_SOCKET set, no base URL."""
    socket = short_dir / "llm.sock"
    server = serve(SCENARIOS / "idle_loop.json", socket_path=socket)
    env = agent_env(workspace, None, ANTHROPIC_API_KEY="per-run", OUROBOROS_LLM_SOCKET=str(socket))
    result = run_agent(workspace, "cycle", "--once", env=env)
    assert result.returncode == 0, result.stderr
    assert server.steps_served == 4


def test_uds_with_a_plain_httpx2_client(serve, short_dir):
    serve(Scenario(steps=[HELLO]), socket_path=short_dir / "s.sock")
    with httpx2.Client(transport=httpx2.HTTPTransport(uds=str(short_dir / "s.sock"))) as http:
        assert http.get("http://x/health").json()["scenario"] == "scenario"
        assert http.post("http://x/v1/messages", json=ASK).json()["content"][1]["name"] == "read_file"


def test_mismatch_is_a_400_that_keeps_the_step_and_exhaustion_is_a_400(serve):
    server = serve(
        Scenario(steps=[{"content": [{"type": "text", "text": "x"}], "match": {"contains": "expected words"}}])
    )
    client = anthropic.Anthropic(base_url=server.url, api_key="k", max_retries=0)
    with pytest.raises(
        anthropic.BadRequestError, match="step 0 expects the last user message to contain 'expected words'"
    ):
        client.messages.create(**ASK)
    assert server.steps_served == 0
    matching = {**ASK, "messages": [{"role": "user", "content": "here are the expected words"}]}
    assert client.messages.create(**matching).content[0].text == "x"
    with pytest.raises(anthropic.BadRequestError, match="exhausted after 1 steps"):
        client.messages.create(**matching)


def test_usage_simulates_prompt_caching(serve):
    server = serve(Scenario(steps=[HELLO, HELLO, {**HELLO, "usage": {"input_tokens": 7, "output_tokens": 3}}]))
    client = anthropic.Anthropic(base_url=server.url, api_key="k")
    system = [{"type": "text", "text": "stable prefix " * 50, "cache_control": {"type": "ephemeral"}}]
    first, second, scripted = (client.messages.create(**ASK, system=system) for _ in range(3))
    assert first.usage.cache_creation_input_tokens > 0 and first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert (scripted.usage.input_tokens, scripted.usage.output_tokens) == (7, 3)
    assert client.messages.count_tokens(model="m", messages=ASK["messages"]).input_tokens > 0


def test_toml_scenarios_and_validation(tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_text('name = "t"\n[[steps]]\ncontent = [{type = "text", text = "hi"}]\n')
    assert load_scenario(toml).steps[0].resolved_stop_reason() == "end_turn"
    (tmp_path / "both.json").write_text(
        '{"steps": [{"content": [{"type": "text", "text": "x"}], "error": {"status": 529}}]}'
    )
    with pytest.raises(ScenarioError, match="either `content` or `error`"):
        load_scenario(tmp_path / "both.json")
    with pytest.raises(ScenarioError, match="cannot read scenario file"):
        load_scenario(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ScenarioError, match="not valid JSON"):
        load_scenario(tmp_path / "broken.json")


@pytest.mark.parametrize("scenario", sorted(SCENARIOS.glob("*.json")), ids=lambda p: p.stem)
def test_shipped_scenarios_are_valid(scenario):
    assert load_scenario(scenario).steps


@pytest.mark.parametrize("use_socket", [False, True])
def test_serve_prints_where_it_listens(use_socket, short_dir):
    args = ["--socket", str(short_dir / "cli.sock")] if use_socket else ["--port", "0"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "scripted_model", "serve", "--scenario", str(SCENARIOS / "demo.json"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        if use_socket:
            assert line == f"unix:{short_dir / 'cli.sock'}"
            with httpx2.Client(transport=httpx2.HTTPTransport(uds=line.removeprefix("unix:"))) as http:
                assert http.get("http://x/health").json()["scenario"] == "demo"
        else:
            assert line.startswith("http://127.0.0.1:")
            assert httpx2.get(line + "/health").json()["steps_served"] == 0
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
