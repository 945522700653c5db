"""`[agent] proposals = "drop"` (what a `task bench` scratch instance runs with): every proposal is
recorded as dropped and removed unjudged, main never moves, the agent is never stopped for a gate.
A real instance (real git, outbox, decision log) on the fake engine."""

from __future__ import annotations

import pytest

from sandbox.fake import FakeEngine
from supervisor.base.errors import ConfigError
from supervisor.loop.event_loop import Supervisor
from supervisor.store.decision_kinds import DecisionKind
from supervisor.store.instance import InstanceConfig
from tests.supervisor.fakes import fake_instance, gatekeeper_of, proposing_agent, verdict_kinds


def _dropped(supervisor: Supervisor) -> list[str]:
    return [
        proposal
        for record in supervisor.gatekeeper.log.records()
        if record.kind == DecisionKind.PROPOSAL_DROPPED
        for proposal in record.details.get("proposals", [])
    ]


def test_dropped_proposals_leave_main_and_the_agent_alone(tmp_path):
    written: list[str] = []
    engine = FakeEngine(agent=proposing_agent(written, times=3))
    instance = fake_instance(tmp_path / "home", engine)
    config = instance.config()
    config = config.model_copy(update={"agent": config.agent.model_copy(update={"proposals": "drop"})})
    main_before = gatekeeper_of(instance, engine).main()
    supervisor = Supervisor(instance, engine, "fake-image", config, stop_when=lambda s: len(_dropped(s)) >= 3)
    assert supervisor.run() == 0
    gk = gatekeeper_of(instance, engine)
    assert sorted(_dropped(supervisor)) == sorted(written)
    assert set(verdict_kinds(gk)) == {DecisionKind.PROPOSAL_DROPPED}  # none judged
    assert gk.main() == main_before and gk.generation_of(gk.main()) == 0
    assert supervisor.verdict_count == 0
    starts = [r for r in gk.log.records() if r.kind == DecisionKind.AGENT_STARTED]
    assert len(starts) == 1  # never stopped to be gated, never restarted on a new main
    assert not any(instance.outbox.glob("*.json"))
    assert all(gk.store.candidate_for(proposal) == "dropped" for proposal in written)
    records = [r for r in gk.log.records() if r.kind == DecisionKind.PROPOSAL_DROPPED and "proposals" in r.details]
    assert len(records) == 3  # one per proposal (and the agent's notice, throttled, beside them)
    assert all('proposals = "drop"' in r.details["reason"] for r in records)
    journal = "".join(path.read_text() for path in instance.journal.rglob("*.md"))
    assert "dropped unjudged" in journal  # the agent is told


def test_the_default_gates(tmp_path):
    assert InstanceConfig().agent.proposals == "gate"
    with pytest.raises(ValueError):
        InstanceConfig.model_validate({"agent": {"proposals": "maybe"}})


def test_a_wrong_value_in_the_file_is_a_clear_error(tmp_path):
    engine = FakeEngine()
    instance = fake_instance(tmp_path / "home", engine)
    text = instance.config_path.read_text().replace("[agent]\n", '[agent]\nproposals = "sometimes"\n', 1)
    instance.config_path.write_text(text)
    with pytest.raises(ConfigError, match="proposals"):
        instance.config()
