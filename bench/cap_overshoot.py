"""Spend past each cap when 50 requests arrive at once (the race LiteLLM's open bugs are about).

For each cap (per-cycle tokens, per-day dollars, total tokens, total dollars) a fresh route and
ledger; 50 concurrent requests (half streamed) whose scripted usage is just below the worst case
the route reserves for them, several rounds each. Overshoot is spend past the cap, in percent of
the cap, the worst over every cap and round. Last line: the headline.

    python bench/cap_overshoot.py [--clients 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
from decimal import Decimal
from pathlib import Path

import httpx2

from scripted_model import Scenario, ScriptedModelServer
from supervisor.route import Ledger, LLMRoute, RouteConfig, Upstream

MODEL = "claude-haiku-4-5"
MAX_TOKENS = 900
USAGE = {"input_tokens": 60, "output_tokens": 880}  # the worst case reserved is about 1,000 tokens
CAPS = {
    "per_cycle tokens": {"per_cycle": {"tokens": 9_500}, "per_day": {}, "total": {}},
    "per_day usd": {"per_cycle": {}, "per_day": {"usd": "0.0475"}, "total": {}},
    "total tokens": {"per_cycle": {}, "per_day": {}, "total": {"tokens": 9_500}},
    "total usd": {"per_cycle": {}, "per_day": {}, "total": {"usd": "0.0475"}},
}


def one_round(scope: str, clients: int, scripted_url: str) -> tuple[Decimal, int, int]:
    config = RouteConfig.model_validate(
        {
            "upstream": {"base_url": scripted_url},
            "caps": CAPS[scope],
            "policy": {"models": [MODEL]},
            "limits": {"rate_per_s": 10_000, "rate_burst": 10_000, "max_concurrent": 64, "max_connections": 128},
        }
    )
    with tempfile.TemporaryDirectory(dir=Path.cwd(), prefix=".bench-caps-") as tmp:
        ledger = Ledger.open(Path(tmp) / "llm-ledger.jsonl")
        upstream = Upstream.from_config(config.upstream, max_connections=64, environ={"ANTHROPIC_API_KEY": "k"})
        with LLMRoute(config, ledger, upstream, lambda event: None, tcp_port=0) as route:
            headers = {"x-api-key": route.issue_credential("bench"), "x-ouroboros-cycle": "c1"}
            barrier = threading.Barrier(clients)
            served = [0]
            failures: list[str] = []

            def ask(index: int) -> None:
                body = {
                    "model": MODEL,
                    "max_tokens": MAX_TOKENS,
                    "stream": index % 2 == 0,
                    "messages": [{"role": "user", "content": "go"}],
                }
                with httpx2.Client(base_url=route.url_tcp, timeout=60) as client:
                    barrier.wait()
                    try:
                        answer = client.post("/v1/messages", json=body, headers=headers)
                    except httpx2.HTTPError as exc:
                        failures.append(repr(exc))
                        return
                    if answer.status_code == 200:
                        served[0] += 1
                    elif answer.status_code != 402:
                        failures.append(f"{answer.status_code} {answer.text[:200]}")

            threads = [threading.Thread(target=ask, args=(i,)) for i in range(clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            totals = ledger.totals
            spent = Decimal(totals.total.tokens) if "tokens" in scope else totals.total.usd
            recorded = totals.total.requests
        ledger.close()
    if failures:
        print(f"  {len(failures)} requests failed otherwise, e.g. {failures[0]}")
    cap = Decimal(next(str(v) for part in CAPS[scope].values() for v in part.values()))
    return max(Decimal(0), (spent - cap) / cap * 100), served[0], recorded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    scenario = Scenario.model_validate(
        {
            "on_exhausted": "repeat",
            "steps": [{"content": [{"type": "text", "text": "ok " * 30}], "usage": USAGE, "delay_ms": 100}],
        }
    )
    worst = Decimal(0)
    with ScriptedModelServer(scenario) as scripted:
        for scope in CAPS:
            for _ in range(args.rounds):
                overshoot, served, recorded = one_round(scope, args.clients, scripted.url)
                worst = max(worst, overshoot)
                print(
                    f"{scope:18} {args.clients} at once: {served} served, {recorded} metered, "
                    f"overshoot {overshoot:.2f}%"
                )
    print(f"overshoot_pct {worst:.0f} (target 0)")


if __name__ == "__main__":
    main()
