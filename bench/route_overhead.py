"""What the LLM route adds per request over calling the scripted model directly, and its throughput.

Each request through the route is authenticated, rate-checked, parsed and checked against the
allow-list, reserved against every cap (fsynced), forwarded, settled from its usage (fsynced) before
the answer goes back, exactly as in production.
Direct and routed calls alternate so drift hits both equally. Last line: the headline figure.

    python bench/route_overhead.py [--requests 400] [--seconds 3] [--threads 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx2

import scripted_model.server
from scripted_model import Scenario, ScriptedModelServer
from supervisor.route import Ledger, LLMRoute, RouteConfig, Upstream

MODEL = "claude-haiku-4-5"
BODY = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "benchmark"}]}
TARGET_MS = 5.0


def timed_post(client: httpx2.Client, headers: dict[str, str], body: dict) -> float:
    started = time.perf_counter()
    response = client.post("/v1/messages", json=body, headers=headers)
    response.read()
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise SystemExit(f"benchmark request failed: {response.status_code} {response.text[:300]}")
    return elapsed * 1000


def paired_medians(
    direct: httpx2.Client, routed: httpx2.Client, headers: dict, body: dict, n: int
) -> tuple[float, float]:
    direct_ms, routed_ms = [], []
    for _ in range(n):
        direct_ms.append(timed_post(direct, headers, body))
        routed_ms.append(timed_post(routed, headers, body))
    return statistics.median(direct_ms), statistics.median(routed_ms)


def throughput(url: str, headers: dict, seconds: float, threads: int, transport=None) -> float:
    done = [0] * threads
    stop_at = time.perf_counter() + seconds

    def worker(index: int) -> None:
        with httpx2.Client(base_url=url, transport=transport, timeout=30) as client:
            while time.perf_counter() < stop_at:
                timed_post(client, headers, BODY)
                done[index] += 1

    started = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return sum(done) / (time.perf_counter() - started)


def disable_nagle_in_the_scripted_server() -> bool:
    """The scripted server writes headers and body separately without TCP_NODELAY, so Nagle plus
    delayed ACK can hold its body ~40 ms, on direct and routed calls alike, drowning the figure we
    measure. Until its handler sets `disable_nagle_algorithm` itself, set it here; say so."""
    handler = scripted_model.server.MessagesHandler
    if handler.disable_nagle_algorithm:
        return False
    handler.disable_nagle_algorithm = True
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="Paired requests per measurement.")
    parser.add_argument("--seconds", type=float, default=3.0, help="Length of the throughput run.")
    parser.add_argument("--threads", type=int, default=4, help="Concurrent clients in the throughput run.")
    args = parser.parse_args()
    if disable_nagle_in_the_scripted_server():
        print("note: TCP_NODELAY set on the scripted server's handler for this run (see docstring)")

    scenario = Scenario.model_validate(
        {
            "on_exhausted": "repeat",
            "steps": [
                {"content": [{"type": "text", "text": "ok " * 40}], "usage": {"input_tokens": 10, "output_tokens": 40}}
            ],
        }
    )
    config = RouteConfig.model_validate(
        {
            "limits": {"rate_per_s": 100_000, "rate_burst": 100_000, "max_concurrent": 64},
            "caps": {"per_cycle": {}, "per_day": {}, "total": {}},
            "policy": {"models": [MODEL]},
        }
    )
    with (
        tempfile.TemporaryDirectory(dir=Path.cwd(), prefix=".bench-route-") as tmp,
        ScriptedModelServer(scenario) as scripted,
    ):
        config.upstream.base_url = scripted.url
        ledger = Ledger.open(Path(tmp) / "llm-ledger.jsonl")  # on the working tree's disk, not tmpfs
        upstream = Upstream.from_config(config.upstream, max_connections=64, environ={"ANTHROPIC_API_KEY": "sk-bench"})
        socket_path = Path(tempfile.mkdtemp(prefix="ouroboros-bench-")) / "llm.sock"
        with LLMRoute(config, ledger, upstream, lambda event: None, socket_path=socket_path, tcp_port=0) as route:
            credential = route.issue_credential("bench")
            headers = {"x-api-key": credential, "anthropic-version": "2023-06-01"}
            uds = httpx2.HTTPTransport(uds=str(socket_path))
            with (
                httpx2.Client(base_url=scripted.url, timeout=30) as direct,
                httpx2.Client(base_url=route.url_tcp, timeout=30) as via_tcp,
                httpx2.Client(base_url="http://llm-route", transport=uds, timeout=30) as via_uds,
            ):
                for client in (direct, via_tcp, via_uds):  # warm connections and code paths
                    for _ in range(20):
                        timed_post(client, headers, BODY)
                direct_ms, tcp_ms = paired_medians(direct, via_tcp, headers, BODY, args.requests)
                _, uds_ms = paired_medians(direct, via_uds, headers, BODY, args.requests)
                stream_direct, stream_tcp = paired_medians(
                    direct, via_tcp, headers, {**BODY, "stream": True}, args.requests // 2
                )
            direct_rps = throughput(scripted.url, headers, args.seconds, args.threads)
            route_rps = throughput(route.url_tcp, headers, args.seconds, args.threads)
            metered = route.ledger.totals.total.requests
        ledger.close()

    figures = {
        "direct_median_ms": round(direct_ms, 3),
        "route_tcp_median_ms": round(tcp_ms, 3),
        "route_uds_median_ms": round(uds_ms, 3),
        "route_tcp_added_ms": round(tcp_ms - direct_ms, 3),
        "route_uds_added_ms": round(uds_ms - direct_ms, 3),
        "stream_added_ms": round(stream_tcp - stream_direct, 3),
        "direct_rps": round(direct_rps, 1),
        "route_rps": round(route_rps, 1),
        "threads": args.threads,
        "requests_metered": metered,
    }
    print(json.dumps(figures, indent=1))
    added = max(figures["route_tcp_added_ms"], figures["route_uds_added_ms"])
    print(f"route_rps {route_rps:.0f} (direct {direct_rps:.0f}, {args.threads} clients)")
    print(f"route_added_ms {added:.2f} (target < {TARGET_MS:g})")


if __name__ == "__main__":
    main()
