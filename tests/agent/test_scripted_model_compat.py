"""The scripted model honours tool_choice like Anthropic's API, or, in its compat mode, behaves like
Ollama, llama.cpp or vLLM: tool_choice ignored, usage approximate or missing. Real HTTP, real SDK."""

from __future__ import annotations

import json
import subprocess
import sys

import anthropic
import httpx2
import pytest
from conftest import REPO, SCENARIOS

from scripted_model import Scenario
from scripted_model.served import read_served

ASK = {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "hello " * 40}]}
TOOL_STEP = {
    "content": [
        {"type": "text", "text": "calling"},
        {"type": "tool_use", "name": "run", "input": {"cmd": "ls"}},
    ]
}
TEXT_STEP = {"content": [{"type": "text", "text": "words " * 30}]}
TOOLS = [{"name": "run", "description": "run", "input_schema": {"type": "object"}}]


def scenario(*steps, compat=None) -> Scenario:
    return Scenario.model_validate({"steps": list(steps), "compat": compat, "on_exhausted": "repeat"})


def client(server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="k", max_retries=0)


def test_by_default_tool_choice_none_is_honoured(serve):
    server = serve(scenario(TOOL_STEP))
    reply = client(server).messages.create(**ASK, tools=TOOLS, tool_choice={"type": "none"})
    assert [b.type for b in reply.content] == ["text"] and reply.stop_reason == "end_turn"
    assert client(server).messages.create(**ASK, tools=TOOLS).stop_reason == "tool_use"


@pytest.mark.parametrize("choice", [{"type": "any"}, {"type": "tool", "name": "other"}])
def test_by_default_a_forced_tool_the_step_does_not_call_is_a_scenario_error(serve, choice):
    server = serve(scenario(TEXT_STEP, TOOL_STEP))
    with pytest.raises(anthropic.BadRequestError, match="step 0 has no tool_use"):
        client(server).messages.create(**ASK, tools=TOOLS, tool_choice=choice)
    assert server.steps_served == 0  # not consumed


def test_compat_ignores_tool_choice(serve):
    server = serve(scenario(TEXT_STEP, TOOL_STEP, compat={"usage": "exact"}))
    forced = client(server).messages.create(**ASK, tools=TOOLS, tool_choice={"type": "any"})
    assert [b.type for b in forced.content] == ["text"]  # the forced tool was not called
    none = client(server).messages.create(**ASK, tools=TOOLS, tool_choice={"type": "none"})
    assert none.stop_reason == "tool_use" and none.content[1].name == "run"  # a tool call where none was allowed


def test_compat_approximate_usage_is_seeded_and_within_the_spread(serve, tmp_path):
    def usages(seed: int, log: str) -> list[dict[str, int]]:
        server = serve(
            scenario(TEXT_STEP, compat={"usage": "approximate", "seed": seed, "spread": 0.2}),
            served_log=tmp_path / log,
        )
        return [client(server).messages.create(**ASK).usage.model_dump(exclude_none=True) for _ in range(5)]

    first, again, other = usages(1, "a"), usages(1, "b"), usages(2, "c")
    assert first == again and first != other
    served = read_served(tmp_path / "a")
    for reported, line in zip(first, served, strict=True):
        assert set(reported) == {"input_tokens", "output_tokens"} and reported == line["reported"]
        used = line["usage"]
        all_input = used["input_tokens"] + used["cache_read_input_tokens"] + used["cache_creation_input_tokens"]
        assert 0.8 * all_input - 1 <= reported["input_tokens"] <= 1.2 * all_input + 1
        assert 0.8 * used["output_tokens"] - 1 <= reported["output_tokens"] <= 1.2 * used["output_tokens"] + 1
    assert any(r["input_tokens"] != line["usage"]["input_tokens"] for r, line in zip(first, served, strict=True))


def test_compat_missing_usage_sends_none_whole_or_streamed(serve, tmp_path):
    server = serve(scenario(TEXT_STEP, compat={"usage": "missing"}), served_log=tmp_path / "served")
    with httpx2.Client(base_url=server.url) as raw:
        whole = raw.post("/v1/messages", json=ASK).json()
        streamed = raw.post("/v1/messages", json={**ASK, "stream": True}).text
    assert "usage" not in whole and whole["content"][0]["text"] == "words " * 30
    assert '"usage"' not in streamed and "message_stop" in streamed
    served = read_served(tmp_path / "served")
    assert [line["reported"] for line in served] == [None, None]
    assert all(line["usage"]["output_tokens"] > 0 for line in served)  # what was really used is still logged


def test_the_command_line_turns_compat_on(tmp_path):
    check = subprocess.run(
        [sys.executable, "-m", "scripted_model", "check", "--scenario", str(SCENARIOS / "demo.json")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0 and "compat" not in check.stdout
    command = [sys.executable, "-m", "scripted_model", "serve", "--scenario", str(SCENARIOS / "idle_loop.json")]
    with subprocess.Popen([*command, "--compat", "missing"], cwd=REPO, stdout=subprocess.PIPE, text=True) as proc:
        try:
            url = proc.stdout.readline().strip()
            answer = httpx2.post(f"{url}/v1/messages", json=ASK, timeout=10).json()
        finally:
            proc.terminate()
    assert answer["type"] == "message" and "usage" not in answer
    bad = subprocess.run([*command, "--compat", "sometimes"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "sometimes" in bad.stderr


def test_a_scenario_file_can_ask_for_compat(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"steps": [TEXT_STEP], "compat": {"usage": "missing"}}))
    check = subprocess.run(
        [sys.executable, "-m", "scripted_model", "check", "--scenario", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0 and "compat usage=missing" in check.stdout
    path.write_text(json.dumps({"steps": [TEXT_STEP], "compat": {"usage": "roughly"}}))
    bad = subprocess.run(
        [sys.executable, "-m", "scripted_model", "check", "--scenario", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "compat.usage" in bad.stderr


def test_an_aside_answers_its_requests_wherever_they_come_and_consumes_no_step(serve):
    first, second = ({"content": [{"type": "text", "text": word}]} for word in ("first", "second"))
    aside = {"system_contains": "side-channel/1", "step": {"content": [{"type": "text", "text": "aside"}]}}
    server = serve(Scenario.model_validate({"steps": [first, second], "asides": [aside]}))
    model = client(server)

    def text(**extra: object) -> str:
        block = model.messages.create(**ASK, **extra).content[0]  # type: ignore[call-overload]
        assert block.type == "text"
        return block.text

    side = {"system": [{"type": "text", "text": "you are side-channel/1 here"}]}
    assert [text(**side), text(), text(system="side-channel/1"), text(system="another"), text(**side)] == [
        "aside", "first", "aside", "second", "aside",
    ]  # fmt: skip
    with pytest.raises(anthropic.BadRequestError, match="exhausted"):
        text()
