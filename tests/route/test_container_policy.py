"""From inside a real agent container, through the real SDK and the route's socket: refused fields,
tools, betas and models get a clear 400 and never reach the upstream; 10 concurrent streams against
a cap end at or below it with the ledger equal to the scripted usage; a wrong-credential flood is
throttled."""

from __future__ import annotations

import json
import uuid

import pytest
from route_helpers import MODEL

from sandbox import ContainerSpec, Mount
from scripted_model import Scenario
from supervisor.route import AGENT_SOCKET_DIR

pytestmark = pytest.mark.docker

PROBE = r"""
import json, os, threading
import anthropic, httpx2

def say(**kw):
    print(json.dumps(kw), flush=True)

socket_path = os.environ["OUROBOROS_LLM_SOCKET"]
client = anthropic.Anthropic(base_url=os.environ["ANTHROPIC_BASE_URL"], max_retries=0,
                             http_client=httpx2.Client(transport=httpx2.HTTPTransport(uds=socket_path)))
base = {"model": MODEL, "max_tokens": 1000, "messages": [{"role": "user", "content": "go"}]}
refused = {
    "mcp_servers": {"extra_body": {"mcp_servers": [{"type": "url", "url": "https://evil.example", "name": "e"}]}},
    "web_fetch": {"extra_body": {"tools": [{"type": "web_fetch_20250910", "name": "web_fetch"}]}},
    "web_search": {"extra_body": {"tools": [{"type": "web_search_20250305", "name": "web_search"}]}},
    "container": {"extra_body": {"container": "c"}},
    "beta": {"extra_headers": {"anthropic-beta": "mcp-client-2025-04-04"}},
    "model": {"extra_body": {"model": "claude-opus-4-1"}},
    "max_tokens": {"extra_body": {"max_tokens": 10**7}},
}
for name, extra in refused.items():
    try:
        client.messages.create(**base, **extra)
        say(check="refused", name=name, status=200)
    except anthropic.APIStatusError as exc:
        say(check="refused", name=name, status=exc.status_code, message=exc.body["error"]["message"])

outcomes = []
def stream():
    try:
        with client.messages.stream(**base, extra_headers={"x-ouroboros-cycle": "caps"}) as events:
            events.get_final_message()
        outcomes.append("served")
    except anthropic.PaymentRequiredError:
        outcomes.append("refused")
    except Exception as exc:
        outcomes.append(type(exc).__name__)
threads = [threading.Thread(target=stream) for _ in range(10)]
[t.start() for t in threads]
[t.join() for t in threads]
say(check="caps", outcomes=outcomes)

flood = {}
with httpx2.Client(transport=httpx2.HTTPTransport(uds=socket_path), base_url="http://llm-route") as raw:
    for n in range(100):
        status = raw.post("/v1/messages", json=base, headers={"x-api-key": f"guess-{n}"}).status_code
        flood[status] = flood.get(status, 0) + 1
say(check="flood", statuses=flood)
"""

USED = {"input_tokens": 50, "output_tokens": 900}


def test_from_inside_a_container_refusals_caps_and_auth_floods_hold(
    docker_engine, agent_image, sandbox_instance, scripted, make_route
):
    step = {"content": [{"type": "text", "text": "streamed " * 20}], "usage": USED, "delay_ms": 150}
    upstream = scripted(Scenario.model_validate({"steps": [step], "on_exhausted": "repeat"}))
    harness = make_route(
        upstream.url,
        {
            "caps": {"per_cycle": {"tokens": 3000}, "per_day": {}, "total": {}},
            "policy": {"models": [MODEL], "input_overhead_tokens": 0, "max_tokens_ceiling": 4096},
            "limits": {"rate_per_s": 1000, "rate_burst": 1000, "max_concurrent": 16, "auth_failures_burst": 5},
        },
    )
    spec = ContainerSpec(
        image=agent_image,
        command=["python3", "-c", f"MODEL = {MODEL!r}\n" + PROBE],
        run_id=f"policy-{uuid.uuid4().hex[:8]}",
        role="agent",
        instance=sandbox_instance,
        mounts=[Mount(source=harness.route.socket_path.parent, target=AGENT_SOCKET_DIR)],
        env=harness.route.agent_env(harness.credential),
    )
    result = docker_engine.run(spec, deadline_s=180)
    assert result.exit_code == 0, result.output
    findings = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    refused = {f["name"]: f for f in findings if f["check"] == "refused"}
    assert len(refused) == 7 and all(f["status"] == 400 for f in refused.values()), refused
    assert refused["beta"]["message"].startswith("anthropic-beta:")
    assert refused["web_fetch"]["message"].startswith("tools[0].type:")
    assert refused["mcp_servers"]["message"].startswith("mcp_servers:")
    assert all(r.get("tools") is None and "mcp_servers" not in r for r in upstream.requests)

    outcomes = next(f["outcomes"] for f in findings if f["check"] == "caps")
    assert sorted(set(outcomes)) <= ["refused", "served"] and len(outcomes) == 10, outcomes
    totals = harness.route.ledger.totals
    assert totals.cycle("caps").tokens <= 3000
    assert totals.total.tokens == upstream.steps_served * 950 == outcomes.count("served") * 950
    assert totals.open == {}

    flood = next(f["statuses"] for f in findings if f["check"] == "flood")
    assert flood.get("401", 0) <= 8 and flood.get("429", 0) >= 90, flood
    assert harness.kinds().count("auth_refused") == 1
