"""The allow-list: everything the route cannot meter, or that reaches the network, is refused with a
400 naming the field, through the real SDK, and never reaches the upstream (the scripted model
records every request it receives)."""

from __future__ import annotations

import json

import anthropic
import pytest
from route_helpers import MODEL, scenario

from supervisor.route.config import RequestPolicy
from supervisor.route.policy import PolicyError, admit, parse_json

USAGE = {"input_tokens": 5, "output_tokens": 5}
BASE = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
CUSTOM_TOOL = {"name": "read_file", "description": "read", "input_schema": {"type": "object"}}

# (what the request adds, the field the refusal must name)
REFUSED = [
    ({"mcp_servers": [{"type": "url", "url": "https://evil.example/mcp", "name": "x"}]}, "mcp_servers"),
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
    ({"tools": [{"type": "web_fetch_20250910", "name": "web_fetch"}]}, "tools[0].type"),
    ({"tools": [{"type": "code_execution_20250522", "name": "code_execution"}]}, "tools[0].type"),
    ({"tools": [{**CUSTOM_TOOL, "defer_loading": True}]}, "tools[0].defer_loading"),
    ({"container": "cont_1"}, "container"),
    ({"service_tier": "priority"}, "service_tier"),
    ({"context_management": {"edits": []}}, "context_management"),
    ({"model": "claude-opus-4-1"}, "model"),
    ({"max_tokens": 1_000_000}, "max_tokens"),
    (
        {"system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]},
        "system[0].cache_control.ttl",
    ),
    (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image", "source": {"type": "url", "url": "https://evil.example/x.png"}}],
                }
            ]
        },
        "messages[0].content[0].source",
    ),
    (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "document", "source": {"type": "url", "url": "https://evil.example/x.pdf"}}],
                }
            ]
        },
        "messages[0].content[0].type",
    ),
]


def test_refused_fields_tools_and_models_never_reach_the_upstream(scripted, make_route):
    upstream = scripted(scenario(USAGE, repeat=True))
    harness = make_route(upstream.url, {"policy": {"models": [MODEL], "max_tokens_ceiling": 4096}})
    client = harness.sdk()
    for extra, field in REFUSED:
        with pytest.raises(anthropic.BadRequestError) as refused:
            client.messages.create(**BASE, extra_body=extra)  # type: ignore[arg-type]
        message = refused.value.body["error"]["message"]
        assert message.startswith(f"{field}:"), (field, message)
    assert upstream.requests == []
    assert harness.route.ledger.totals.open == {} and harness.route.ledger.totals.total.requests == 0
    assert harness.kinds().count("policy_refused") == 1  # journaled at most once per interval

    # and what is allowed goes through: custom tools, tool_choice, 5-minute cache, stream
    client.messages.create(
        **BASE,
        tools=[{**CUSTOM_TOOL, "cache_control": {"type": "ephemeral"}}],  # type: ignore[arg-type]
        tool_choice={"type": "auto"},
        extra_body={"temperature": 0.5},
    )
    with client.messages.stream(**BASE) as stream:  # type: ignore[arg-type]
        stream.get_final_message()
    assert len(upstream.requests) == 2
    assert upstream.requests[0]["tools"][0]["name"] == "read_file"


def test_betas_only_from_the_operator_list(scripted, make_route):
    upstream = scripted(scenario(USAGE, repeat=True))
    harness = make_route(upstream.url, {"policy": {"models": [MODEL], "betas": ["token-efficient-tools-2025-02-19"]}})
    client = harness.sdk()
    for beta in ("mcp-client-2025-04-04", "web-fetch-2025-09-10", "context-1m-2025-08-07"):
        with pytest.raises(anthropic.BadRequestError, match="anthropic-beta: .*not enabled"):
            client.messages.create(**BASE, extra_headers={"anthropic-beta": f"token-efficient-tools-2025-02-19,{beta}"})  # type: ignore[arg-type]
    assert upstream.requests == []
    client.messages.create(**BASE, extra_headers={"anthropic-beta": "token-efficient-tools-2025-02-19"})  # type: ignore[arg-type]
    assert len(upstream.requests) == 1


def test_max_tokens_is_required(scripted, make_route):
    upstream = scripted(scenario(USAGE, repeat=True))
    harness = make_route(upstream.url)
    with harness.raw() as raw:
        answer = raw.post(
            "/v1/messages",
            headers={"x-api-key": harness.credential},
            json={"model": MODEL, "messages": BASE["messages"]},
        )
    assert answer.status_code == 400 and answer.json()["error"]["message"].startswith("max_tokens:")
    assert upstream.requests == []


def test_what_is_forwarded_is_what_was_judged():
    """Parser differentials: a duplicate key (which one would the upstream read?) or NaN is refused."""
    duplicate = (
        b'{"model": "m", "tools": [], "max_tokens": 5, "messages": [], "tools": [{"type": "web_search_20250305"}]}'
    )
    with pytest.raises(PolicyError, match="^tools: appears twice"):
        parse_json(duplicate, 1000)
    with pytest.raises(PolicyError, match="NaN"):
        parse_json(b'{"temperature": NaN}', 1000)
    with pytest.raises(PolicyError, match="objects/arrays"):
        parse_json(b"[" * 5000, 1000)
    request = parse_json(json.dumps({**BASE, "messages": [{"role": "user", "content": "caf\u00e9"}]}).encode(), 1000)
    admitted = admit(request, RequestPolicy(), frozenset({MODEL}), None)
    assert json.loads(admitted.body) == request  # the re-serialised request, nothing added
    assert admitted.input_tokens_bound >= len(admitted.body) + RequestPolicy().input_overhead_tokens


def test_a_server_tool_the_operator_priced_is_reserved_at_its_use_cap():
    policy = RequestPolicy.model_validate(
        {"server_tools": {"web_search_20250305": {"usd_per_use": "0.01", "max_uses": 5}}}
    )
    tool = {"type": "web_search_20250305", "name": "web_search"}
    with pytest.raises(PolicyError, match="max_uses"):
        admit({**BASE, "tools": [tool]}, policy, frozenset({MODEL}), None)
    with pytest.raises(PolicyError, match="max_uses"):
        admit({**BASE, "tools": [{**tool, "max_uses": 6}]}, policy, frozenset({MODEL}), None)
    admitted = admit({**BASE, "tools": [{**tool, "max_uses": 3}]}, policy, frozenset({MODEL}), None)
    assert str(admitted.server_tool_usd) == "0.03"
