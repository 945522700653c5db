"""Peak RSS of the process hosting the route while 16 clients send maximum-size bodies at once.

The route runs alone in a child process (as in the supervisor; the scripted model runs in another
one), with caps off so every body is forwarded. Two bodies, each `limits.max_body_bytes` (8 MiB):
one long text message (cheap to parse), and one made of as many small JSON objects as the route's
node limit lets through (the expensive case for a parser). Run with the default `max_concurrent`
(8: the other 8 are refused before their body is read) and with 16 forwarded at once.
Last line: the headline, the worst peak.

    python bench/route_memory.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx2

ROOT = Path(__file__).resolve().parent.parent
MODEL = "claude-haiku-4-5"
MAX_BODY = 8 * 1024 * 1024
CLIENTS = 16

ROUTE = r"""
import json, sys, time
from pathlib import Path
from supervisor.route import LLMRoute, Ledger, RouteConfig, Upstream
config = RouteConfig.model_validate(json.loads(sys.argv[1]))
route = LLMRoute(config, Ledger.open(Path(sys.argv[2])), Upstream.from_config(config.upstream,
                 environ={"ANTHROPIC_API_KEY": "k"}), tcp_port=0).start()
print(route.url_tcp, route.issue_credential("bench"), flush=True)
time.sleep(3600)
"""


def text_body() -> bytes:
    head = {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": ""}]}
    skeleton = json.dumps(head).encode()
    return skeleton.replace(b'"content": ""', b'"content": "' + b"a" * (MAX_BODY - len(skeleton) - 8) + b'"')


def many_objects_body(nodes: int) -> bytes:
    """Tool results each holding one tiny text block: about `nodes` JSON objects and arrays."""
    pairs = []
    for n in range(nodes // 10):
        pairs.append({"role": "assistant", "content": [{"type": "tool_use", "id": f"t{n}", "name": "x", "input": {}}]})
        pairs.append(
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": f"t{n}", "content": [{"type": "text", "text": "y" * 120}]}
                ],
            }
        )
    body = json.dumps({"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "go"}, *pairs]})
    return body.encode()[:MAX_BODY] if len(body) > MAX_BODY else body.encode()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(scripted_url: str, body: bytes, max_concurrent: int) -> tuple[float, float, dict[int, int]]:
    config = {
        "upstream": {"base_url": scripted_url},
        "caps": {"per_cycle": {}, "per_day": {}, "total": {}},
        "policy": {"models": [MODEL]},
        "limits": {"rate_per_s": 1000, "rate_burst": 1000, "max_concurrent": max_concurrent},
    }
    with tempfile.TemporaryDirectory(prefix="ouroboros-mem-") as tmp:
        child = subprocess.Popen(
            [sys.executable, "-c", ROUTE, json.dumps(config), f"{tmp}/ledger.jsonl"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            url, credential = child.stdout.readline().split()  # type: ignore[union-attr]
            idle = rss_mb(child.pid)
            statuses: dict[int, int] = {}
            barrier = threading.Barrier(CLIENTS)

            def send() -> None:
                with httpx2.Client(base_url=url, timeout=120) as client:
                    barrier.wait()
                    try:
                        status = client.post(
                            "/v1/messages",
                            content=body,
                            headers={"x-api-key": credential, "content-type": "application/json"},
                        ).status_code
                    except httpx2.HTTPError:
                        status = 0
                    statuses[status] = statuses.get(status, 0) + 1

            threads = [threading.Thread(target=send) for _ in range(CLIENTS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            time.sleep(0.2)
            return idle, peak_rss_mb(child.pid), statuses
        finally:
            child.kill()
            child.wait()


def main() -> None:
    scenario = Path(tempfile.mkdtemp(prefix="ouroboros-mem-")) / "scenario.json"
    scenario.write_text(
        json.dumps(
            {
                "on_exhausted": "repeat",
                "steps": [
                    {"content": [{"type": "text", "text": "ok"}], "usage": {"input_tokens": 5, "output_tokens": 5}}
                ],
            }
        )
    )
    model = subprocess.Popen(
        [sys.executable, "-m", "scripted_model", "serve", "--scenario", str(scenario)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = model.stdout.readline()  # type: ignore[union-attr]
        url = next(word for word in line.split() if word.startswith("http://"))
        worst = 0.0
        for name, body in (("long text", text_body()), ("200k small objects", many_objects_body(199_000))):
            for concurrent in (8, 16):
                idle, peak, statuses = measure(url, body, concurrent)
                worst = max(worst, peak)
                print(
                    f"{name:19} {len(body) / 2**20:.1f} MiB x {CLIENTS}, max_concurrent {concurrent:2}: "
                    f"idle {idle:.0f} MB, peak {peak:.0f} MB, answers {dict(sorted(statuses.items()))}"
                )
        print(f"route_peak_rss_mb {worst:.0f} (target < 200)")
    finally:
        model.kill()
        model.wait()


if __name__ == "__main__":
    main()
