"""Exact caps: under any concurrency, spend never passes a cap, and the ledger equals what was served.

The worst case of each request is reserved against every cap before it is forwarded, under the
ledger's lock; a kill mid-request neither frees nor double-counts its reservation.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from decimal import Decimal

import anthropic
import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from route_helpers import MODEL, REAL_KEY

from scripted_model import Scenario
from supervisor.route import Caps, Ledger
from supervisor.route.ledger import LedgerEntry, Release, utc_now
from supervisor.route.metering import BudgetGuard, new_reservation
from supervisor.route.pricing import Usage

MAX_TOKENS = 1000
USED = {"input_tokens": 50, "output_tokens": 900}  # 950 tokens, $0.00455 at the haiku price
POLICY = {"models": [MODEL], "input_overhead_tokens": 0}
OPEN = {"rate_per_s": 1000, "rate_burst": 1000, "max_concurrent": 64, "max_connections": 128}


def slow_scenario(usage: dict[str, int], delay_ms: int = 150) -> Scenario:
    step = {"content": [{"type": "text", "text": "streamed " * 6}], "usage": usage, "delay_ms": delay_ms}
    return Scenario.model_validate({"name": "caps", "steps": [step], "on_exhausted": "repeat"})


CAPS = {
    "cycle tokens": {"per_cycle": {"tokens": 3000}, "per_day": {}, "total": {}},
    "day usd": {"per_cycle": {}, "per_day": {"usd": "0.012"}, "total": {}},
    "total tokens": {"per_cycle": {}, "per_day": {}, "total": {"tokens": 2900}},
    "just below": {"per_cycle": {}, "per_day": {}, "total": {"tokens": 1150}},  # room for one worst case (about 1110)
}


def spent_in(scope: str, harness) -> tuple[Decimal, Decimal]:
    totals = harness.route.ledger.totals
    cap = Caps.model_validate(CAPS[scope])
    amount = {"cycle tokens": cap.per_cycle, "day usd": cap.per_day}.get(scope, cap.total)
    if amount.tokens is not None:
        return Decimal(totals.total.tokens), Decimal(amount.tokens)
    return totals.total.usd, amount.usd  # type: ignore[return-value]


@pytest.mark.parametrize("clients", [10, 50])
@pytest.mark.parametrize("scope", list(CAPS))
def test_concurrent_streams_end_at_or_below_every_cap(scripted, make_route, clients, scope):
    upstream = scripted(slow_scenario(USED))
    harness = make_route(upstream.url, {"caps": CAPS[scope], "policy": POLICY, "limits": OPEN})
    client = harness.sdk(max_retries=0)
    barrier = threading.Barrier(clients)
    outcomes: list[str] = []

    def one() -> None:
        barrier.wait()
        try:
            with client.messages.stream(
                model=MODEL,
                max_tokens=MAX_TOKENS,
                messages=[{"role": "user", "content": "go"}],
                extra_headers={"x-ouroboros-cycle": "c1"},
            ) as stream:
                stream.get_final_message()
            outcomes.append("served")
        except anthropic.PaymentRequiredError:
            outcomes.append("refused")
        except Exception as exc:  # noqa: BLE001 - recorded, so the assertion shows it
            outcomes.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    spent, cap = spent_in(scope, harness)
    assert spent <= cap, (scope, spent, cap)
    assert sorted(set(outcomes)) <= ["refused", "served"], outcomes
    assert len(outcomes) == clients and outcomes.count("served") == upstream.steps_served >= 1
    totals = harness.route.ledger.totals
    assert totals.total.tokens == upstream.steps_served * 950  # the ledger equals the scripted usage
    assert totals.open == {}
    assert outcomes.count("refused") >= 1


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    requests=st.lists(st.tuples(st.integers(1, 400), st.integers(0, 100), st.booleans()), min_size=1, max_size=40),
    cap=st.integers(1, 2000),
)
def test_no_interleaving_of_reserve_settle_and_release_passes_a_cap(tmp_path_factory, requests, cap):
    """Property: threads reserving a worst case, then settling at most that (or releasing), never
    make recorded spend pass the cap, at any moment, with the real ledger underneath."""
    ledger = Ledger.open(tmp_path_factory.mktemp("prop") / "ledger.jsonl")
    caps = Caps.model_validate({"per_cycle": {"tokens": cap}, "per_day": {"usd": "1"}, "total": {"tokens": cap}})
    guard = BudgetGuard(ledger.totals, caps, lambda event: None)
    peaks: list[int] = []

    def one(worst: int, used_percent: int, release: bool) -> None:
        held = new_reservation("run", "c", MODEL, True, Usage(input_tokens=worst), Decimal("0.0001") * worst)
        if guard.reserve(ledger, held) is not None:
            return
        with ledger.lock:
            peaks.append(ledger.totals.total.tokens + ledger.totals.reserved("total", "all")[0])
        if release:
            ledger.append(Release(ts=utc_now(), id=held.id, reason="test"))
            return
        used = Usage(input_tokens=worst * used_percent // 100)
        ledger.append(
            LedgerEntry(
                ts=utc_now(),
                run_id="run",
                cycle="c",
                model=MODEL,
                stream=True,
                status=200,
                complete=True,
                usage=used,
                cost_usd=Decimal("0.0001") * used.input_tokens,
                reservation=held.id,
                charged_day=held.day,
            )
        )

    threads = [threading.Thread(target=one, args=request) for request in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert all(peak <= cap for peak in peaks)
        assert ledger.totals.total.tokens <= cap and ledger.totals.open == {}
    finally:
        ledger.close()


KILLED_ROUTE = textwrap.dedent("""\
    import sys, time
    from pathlib import Path
    from scripted_model import Scenario, ScriptedModelServer
    from supervisor.route import LLMRoute, Ledger, RouteConfig, Upstream
    step = {"content": [{"type": "text", "text": "slow"}], "usage": {"input_tokens": 5, "output_tokens": 5},
            "delay_ms": 60000}
    model = ScriptedModelServer(Scenario.model_validate({"steps": [step]})).start()
    config = RouteConfig.model_validate({"upstream": {"base_url": model.url}, "policy": {"models": [sys.argv[2]]}})
    route = LLMRoute(config, Ledger.open(Path(sys.argv[1])), Upstream.from_config(config.upstream,
                     environ={"ANTHROPIC_API_KEY": "k"}), tcp_port=0).start()
    print(route.url_tcp, route.issue_credential("run-k"), flush=True)
    time.sleep(120)
""")


def test_a_kill_mid_request_neither_frees_nor_double_counts(tmp_path):
    ledger_path = tmp_path / "ledger.jsonl"
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_ROUTE, str(ledger_path), MODEL],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "ANTHROPIC_API_KEY": REAL_KEY},
    )
    try:
        url, credential = child.stdout.readline().split()  # type: ignore[union-attr]
        request = threading.Thread(target=_post_ignoring_errors, args=(url, credential), daemon=True)
        request.start()
        deadline = time.monotonic() + 20
        while b'"kind":"reserve"' not in (ledger_path.read_bytes() if ledger_path.exists() else b""):
            assert time.monotonic() < deadline, "the route never reserved"
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    first = Ledger.open(ledger_path)
    worst = first.totals.total.tokens
    assert first.totals.open == {} and first.totals.total.requests == 1
    assert worst >= MAX_TOKENS_KILLED + 5  # charged its worst case: the answer may have been served
    first.close()
    second = Ledger.open(ledger_path)  # a second start must not charge it again
    assert (second.totals.total.tokens, second.totals.total.requests) == (worst, 1)
    second.close()
    ledger_path.with_name(ledger_path.name + ".snapshot").unlink()  # and a full replay agrees
    third = Ledger.open(ledger_path)
    assert (third.totals.total.tokens, third.totals.total.requests) == (worst, 1)
    third.close()


MAX_TOKENS_KILLED = 64


def _post_ignoring_errors(url: str, credential: str) -> None:
    try:
        httpx2.post(
            f"{url}/v1/messages",
            headers={"x-api-key": credential},
            timeout=30,
            json={"model": MODEL, "max_tokens": MAX_TOKENS_KILLED, "messages": [{"role": "user", "content": "x"}]},
        )
    except httpx2.HTTPError:
        pass


def test_stop_waits_for_requests_in_flight_and_meters_them(scripted, make_route):
    upstream = scripted(slow_scenario({"input_tokens": 5, "output_tokens": 7}, delay_ms=800))
    harness = make_route(upstream.url)
    answers: list[int] = []

    def ask() -> None:
        message = harness.sdk().messages.create(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "x"}])
        answers.append(message.usage.output_tokens)

    caller = threading.Thread(target=ask)
    caller.start()
    deadline = time.monotonic() + 10
    while harness.route.gate.busy == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    harness.route.stop(deadline_s=10)
    caller.join(10)
    assert answers == [7]
    assert 0.2 < time.monotonic() - started < 10  # it waited for the answer, not for the deadline
    assert harness.route.ledger.totals.total.tokens == 12 and harness.route.ledger.totals.open == {}
