"""From inside a hardened agent container: the route works, nothing else is reachable, no key inside.

The container runs with network none and the route's socket directory bind-mounted, exactly as
the supervisor will start the agent. Connection attempts to outside addresses are made only from
inside the container (where they fail at once with no route); the host itself sends nothing out.
"""

from __future__ import annotations

import json
import uuid

import pytest
from route_helpers import MODEL, REAL_KEY, scenario

from sandbox import ContainerSpec, Mount
from supervisor.route import AGENT_SOCKET_DIR

pytestmark = pytest.mark.docker

USAGE = {"input_tokens": 21, "output_tokens": 13, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 8}

# Runs inside the container; prints one JSON line per finding, so the test asserts on data.
PROBE = r"""
import json, os, socket, sys
import anthropic, httpx2

def say(**kw):
    print(json.dumps(kw), flush=True)

client = anthropic.Anthropic(
    base_url=os.environ["ANTHROPIC_BASE_URL"],
    http_client=httpx2.Client(transport=httpx2.HTTPTransport(uds=os.environ["OUROBOROS_LLM_SOCKET"])),
    max_retries=0,
)
message = client.messages.create(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "hi"}],
                                 extra_headers={"x-ouroboros-cycle": "probe"})
say(check="sdk", usage=message.usage.model_dump(include={"input_tokens", "output_tokens"}))
with client.messages.stream(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "hi"}]) as stream:
    final = stream.get_final_message()
say(check="sdk-stream", output_tokens=final.usage.output_tokens)

for host, port in TARGETS:
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.settimeout(2)
    try:
        probe.connect((host, port))
        say(check="connect", target=f"{host}:{port}", result="connected")
    except OSError as exc:
        say(check="connect", target=f"{host}:{port}", result=type(exc).__name__, errno=exc.errno)
    finally:
        probe.close()

for name in ("example.com", "api.anthropic.com", "llm-route"):
    try:
        found = socket.getaddrinfo(name, 443)
        say(check="dns", name=name, result="resolved", addresses=sorted({f[4][0] for f in found}))
    except OSError as exc:
        say(check="dns", name=name, result="failed", error=str(exc))

say(check="interfaces", names=sorted(os.listdir("/sys/class/net")))

needle = bytes.fromhex(KEY_HEX)  # given as hex, so this very command line does not contain it
hits, scanned = [], 0
for value in os.environ.values():
    if needle.decode() in value:
        hits.append("environ")
for root, dirs, files in os.walk("/", onerror=lambda e: None):
    if root in ("/proc", "/sys", "/dev"):
        dirs[:] = []
        continue
    for name in files:
        path = os.path.join(root, name)
        try:
            if os.path.islink(path) or os.path.getsize(path) > 4_000_000:
                continue
            with open(path, "rb") as handle:
                scanned += 1
                if needle in handle.read():
                    hits.append(path)
        except OSError:
            continue
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            if needle in open(f"/proc/{pid}/environ", "rb").read() or needle in open(f"/proc/{pid}/cmdline", "rb").read():
                hits.append(f"/proc/{pid}")
        except OSError:
            pass
say(check="key", hits=hits, scanned=scanned)
"""


def run_probe(docker_engine, agent_image, sandbox_instance, harness, targets, extra_env=None):
    route = harness.route
    code = f"MODEL = {MODEL!r}\nKEY_HEX = {REAL_KEY.encode().hex()!r}\nTARGETS = {targets!r}\n" + PROBE
    spec = ContainerSpec(
        image=agent_image,
        command=["python3", "-c", code],
        run_id=f"route-{uuid.uuid4().hex[:8]}",
        role="agent",
        instance=sandbox_instance,
        mounts=[Mount(source=route.socket_path.parent, target=AGENT_SOCKET_DIR, read_only=True)],
        env={**route.agent_env(harness.credential), **(extra_env or {})},
    )
    running = docker_engine.start(spec)
    try:
        info = docker_engine.inspect(running.id)
        exit_code = running.wait(timeout_s=120)
        output = b"".join(running.follow_logs()).decode(errors="replace")
    finally:
        running.remove()
    findings = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return info, exit_code, output, findings


def test_agent_container_reaches_only_the_route_and_never_sees_the_key(
    docker_engine, agent_image, sandbox_instance, scripted, make_route
):
    upstream = scripted(scenario(USAGE, USAGE))
    harness = make_route(upstream.url)
    tcp_port = int(harness.route.url_tcp.rsplit(":", 1)[1])
    targets = [("8.8.8.8", 53), ("1.1.1.1", 443), ("172.17.0.1", 2375), ("127.0.0.1", tcp_port)]
    info, exit_code, output, findings = run_probe(docker_engine, agent_image, sandbox_instance, harness, targets)
    assert exit_code == 0, output
    by_check = {}
    for finding in findings:
        by_check.setdefault(finding["check"], []).append(finding)

    # the route works through the real SDK over the mounted socket, and meters what it forwarded
    assert by_check["sdk"][0]["usage"] == {"input_tokens": 21, "output_tokens": 13}
    assert by_check["sdk-stream"][0]["output_tokens"] == 13
    entries = harness.route.ledger.totals
    assert entries.total.requests == 2 and entries.total.tokens == 2 * sum(USAGE.values())
    assert entries.cycle("probe").requests == 1

    # nothing else: no interface but loopback, no outside address, not even the host's loopback port
    assert by_check["interfaces"][0]["names"] == ["lo"]
    assert {f["target"]: f["result"] for f in by_check["connect"]} == {
        f"{host}:{port}": result
        for (host, port), result in zip(
            targets, ["OSError", "OSError", "OSError", "ConnectionRefusedError"], strict=False
        )
    }
    assert all(f["result"] == "failed" for f in by_check["dns"]), by_check["dns"]

    # the key: not in the container's environment, files or processes, nor in what docker holds
    assert by_check["key"][0]["hits"] == [] and by_check["key"][0]["scanned"] > 1000
    assert REAL_KEY not in json.dumps(info)
    assert info["HostConfig"]["NetworkMode"] == "none"
    env = dict(item.split("=", 1) for item in info["Config"]["Env"])
    assert env["ANTHROPIC_API_KEY"] == harness.credential
    assert env["OUROBOROS_LLM_SOCKET"] == f"{AGENT_SOCKET_DIR}/llm.sock"
    assert [(m["Destination"], m["RW"]) for m in info["Mounts"]] == [(AGENT_SOCKET_DIR, False)]


def test_the_key_scan_finds_a_key_that_was_planted(docker_engine, agent_image, sandbox_instance, scripted, make_route):
    """The control for the test above: the same probe does see a key when one is leaked in."""
    upstream = scripted(scenario(USAGE, repeat=True))
    harness = make_route(upstream.url)
    info, exit_code, output, findings = run_probe(
        docker_engine, agent_image, sandbox_instance, harness, [], extra_env={"LEAKED": REAL_KEY}
    )
    assert exit_code == 0, output
    key = [f for f in findings if f["check"] == "key"][0]
    assert "environ" in key["hits"] and any(hit.startswith("/proc/") for hit in key["hits"])
    assert REAL_KEY in json.dumps(info)
