"""The ledger audit the chaos test relies on, through the real route, SDK and scripted model: it
passes on an honest ledger, allows exactly what a kill can leave, and fails when a record is missing.
"""

from __future__ import annotations

from pathlib import Path

import anthropic
import pytest

from scripted_model import Scenario, ScriptedModelServer
from scripted_model.served import SERVED_LOG_ENV, read_served
from supervisor.route import Ledger, LLMRoute, RouteConfig, Upstream
from supervisor.route.ledger import LedgerEntry, iter_records
from tests.chaos.ledger_audit import audit_ledger

MODEL = "claude-haiku-4-5"
SCRIPT = Scenario.model_validate(
    {
        "name": "audit",
        "on_exhausted": "repeat",
        "steps": [
            {"content": [{"type": "text", "text": "one " * 30}]},
            {"content": [{"type": "text", "text": "two " * 50}], "usage": {"output_tokens": 77}},
        ],
    }
)


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.served_path = tmp_path / "served.jsonl"
        self.ledger_path = tmp_path / "llm-ledger.jsonl"
        self.model = ScriptedModelServer(SCRIPT, served_log=self.served_path).start()
        self.config = RouteConfig.model_validate(
            {"upstream": {"base_url": self.model.url}, "policy": {"models": [MODEL]}}
        )
        self.route: LLMRoute | None = None

    def start_route(self) -> LLMRoute:
        upstream = Upstream.from_config(self.config.upstream, environ={"ANTHROPIC_API_KEY": "real-key"})
        self.route = LLMRoute(
            self.config, Ledger.open(self.ledger_path), upstream, lambda event: None, tcp_port=0
        ).start()
        return self.route

    def stop_route(self) -> None:
        if self.route is not None:
            self.route.stop()
            self.route.ledger.close()
            self.route = None

    def calls(self, count: int) -> None:
        route = self.route or self.start_route()
        client = anthropic.Anthropic(base_url=route.url, api_key=route.issue_credential("run-1"), max_retries=0)
        for n in range(count):
            messages = [{"role": "user", "content": f"call {n}"}]
            if n % 2:
                with client.messages.stream(model=MODEL, max_tokens=200, messages=messages) as stream:
                    stream.get_final_message()
            else:
                client.messages.create(model=MODEL, max_tokens=200, messages=messages)

    def audit(self, interrupted: int = 0):
        price = self.config.pricing.price_for(MODEL)
        assert price is not None
        return audit_ledger(read_served(self.served_path), self.ledger_path, price, interrupted)

    def close(self) -> None:
        self.stop_route()
        self.model.stop()


@pytest.fixture
def setup(tmp_path):
    made = Setup(tmp_path)
    yield made
    made.close()


def test_an_honest_ledger_passes_with_every_usage_exact(setup):
    setup.calls(4)
    setup.stop_route()
    audit = setup.audit()
    assert audit.ok, audit.problems
    assert (audit.served, audit.recorded, audit.held) == (4, 4, 0)
    ids = [line["id"] for line in read_served(setup.served_path)]
    assert len(set(ids)) == 4 and all(i.startswith("msg_scripted_") for i in ids)


def test_it_fails_when_the_route_skips_recording(setup, monkeypatch):
    """The control: a route that serves without recording is caught."""
    setup.calls(1)
    monkeypatch.setattr(LLMRoute, "record", lambda *args, **kwargs: None)
    setup.calls(2)
    setup.stop_route()
    audit = setup.audit(interrupted=1)
    assert audit.problems == ["2 requests charged at their worst case (not recorded), but kills can explain at most 1"]
    assert setup.audit(interrupted=2).ok  # what two kills mid-request leave is exactly this


def test_it_fails_when_the_route_skips_recording_and_frees_the_reservation(setup, monkeypatch):
    monkeypatch.setattr(LLMRoute, "record", lambda self, call, *args, **kwargs: self.release(call, "skipped"))
    setup.calls(2)
    setup.stop_route()
    audit = setup.audit(interrupted=5)
    assert len(audit.problems) == 2 and all("not in the ledger" in p for p in audit.problems), audit.problems


def test_it_fails_when_a_usage_differs_or_a_response_is_charged_twice(setup):
    setup.calls(2)
    setup.stop_route()
    lines = setup.ledger_path.read_bytes().splitlines(keepends=True)
    spend = next(line for line in lines if b'"kind":"spend"' in line)
    setup.ledger_path.write_bytes(b"".join(lines) + spend)
    assert any("charged twice" in p for p in setup.audit().problems)
    setup.ledger_path.write_bytes(b"".join(lines).replace(b'"output_tokens":77', b'"output_tokens":76'))
    assert any("the ledger charged" in p for p in setup.audit().problems)


def test_a_kill_between_serving_and_recording_is_covered_by_the_worst_case_charged_at_the_next_open(setup):
    """What a kill -9 leaves: the model served, the reservation is in the ledger, the spend is not."""
    setup.calls(3)
    setup.stop_route()
    lines = setup.ledger_path.read_bytes().splitlines(keepends=True)
    last_spend = max(i for i, line in enumerate(lines) if b'"kind":"spend"' in line)
    setup.ledger_path.write_bytes(b"".join(lines[:last_spend] + lines[last_spend + 1 :]))
    assert not setup.audit(interrupted=0).ok  # no kill: nothing may be left unrecorded
    assert setup.audit(interrupted=1).ok and setup.audit(interrupted=1).held == 1  # open, charged at the next open
    Ledger.open(setup.ledger_path).close()  # the next start settles it at its worst case
    audit = setup.audit(interrupted=1)
    assert audit.ok, audit.problems
    assert (audit.recorded, audit.covered_by_worst_case, audit.held) == (2, 1, 1)
    settled = [r for _, r in iter_records(setup.ledger_path) if isinstance(r, LedgerEntry) and r.status == 0]
    assert len(settled) == 1


def test_one_worst_case_charge_never_covers_two_responses(setup):
    setup.calls(2)
    setup.stop_route()
    lines = setup.ledger_path.read_bytes().splitlines(keepends=True)
    kept = [line for line in lines if b'"kind":"spend"' not in line]
    reserves = [line for line in kept if b'"kind":"reserve"' in line]
    setup.ledger_path.write_bytes(b"".join(kept[: kept.index(reserves[1])]))  # one reservation, two served
    audit = setup.audit(interrupted=1)
    assert audit.held == 1 and audit.covered_by_worst_case == 1
    assert len(audit.problems) == 1 and "not in the ledger" in audit.problems[0]


def test_the_served_log_is_turned_on_by_the_environment_lists_answers_only_and_skips_a_torn_line(tmp_path, monkeypatch):
    log = tmp_path / "served.jsonl"
    monkeypatch.setenv(SERVED_LOG_ENV, str(log))
    script = Scenario.model_validate(
        {
            "name": "with-error",
            "steps": [
                {"error": {"status": 529, "type": "overloaded_error"}},
                {"content": [{"type": "text", "text": "ok"}]},
            ],
        }
    )
    with ScriptedModelServer(script) as server:
        client = anthropic.Anthropic(base_url=server.url, api_key="scripted", max_retries=0)
        with pytest.raises(anthropic.APIStatusError):
            client.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "x"}])
        answer = client.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "x"}])
    with open(log, "ab") as handle:
        handle.write(b'{"ts": 1, "id": "msg_cut')  # a kill mid-line: that answer was never sent
    served = read_served(log)
    assert [line["id"] for line in served] == [answer.id]
    assert served[0]["usage"] == answer.usage.model_dump(
        include={"input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"}
    )
