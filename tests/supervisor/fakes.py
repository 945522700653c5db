"""A real instance (real git, real route, real outbox) driven by the fake engine: the runner's
decisions tested in a second, with no Docker. Integration tests with the real engine live in
tests/system and tests/chaos."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sandbox.fake import FakeContainer, FakeEngine
from supervisor.gate.gatekeeper import Gatekeeper
from supervisor.loop.event_loop import Supervisor
from supervisor.store.decision_kinds import DecisionKind
from supervisor.store.instance import Instance
from supervisor.store.instance_init import init_instance, package_dir

IDLE = package_dir("scripted_model") / "scenarios" / "idle_loop.json"


def fake_instance(home: Path, engine: FakeEngine, extra_config: str = "") -> Instance:
    instance = init_instance(home, IDLE, model="claude-sonnet-5-5")
    # The fake engine runs no real agent, so held-out acceptance (tested on the real engine in
    # tests/acceptance) is off here; these tests are about the runner's decisions.
    extra_config = "[acceptance]\nenabled = false\n" + extra_config
    instance.config_path.write_text(instance.config_path.read_text() + "\n" + extra_config)
    gatekeeper_of(instance, engine).genesis()
    return instance


def gatekeeper_of(instance: Instance, engine: FakeEngine) -> Gatekeeper:
    return Gatekeeper(
        instance.repo, engine=engine, journal_root=instance.journal, image="fake-image", instance=instance.instance_id
    )


def write_proposal(outbox: Path, summary: str = "Add a note") -> str:
    proposal_id = uuid.uuid4().hex
    message = {
        "version": 1,
        "kind": "proposal",
        "id": proposal_id,
        "why": "Because a test says so.",
        "summary": summary,
        "created_at": datetime.now(UTC).isoformat(),
    }
    temp = outbox / f"{proposal_id}.json.tmp"
    temp.write_text(json.dumps(message))
    os.replace(temp, outbox / f"{proposal_id}.json")
    return proposal_id


def proposing_agent(
    written: list[str], times: int = 1, edit: Callable[[Path], None] | None = None
) -> Callable[[FakeContainer], int]:
    """An agent that edits its workspace and proposes `times` times per run, then idles until stopped."""

    def script(container: FakeContainer) -> int:
        workspace = Path(container.mount("/workspace"))
        outbox = Path(container.mount("/ouroboros/outbox"))
        for _ in range(times):
            if edit is not None:
                edit(workspace)
            else:
                (workspace / "agent" / f"note_{uuid.uuid4().hex[:8]}.txt").write_text("a note\n")
            written.append(write_proposal(outbox))
        container.stopped.wait()
        return 137

    return script


def run_in_thread(supervisor: Supervisor) -> tuple[threading.Thread, dict[str, object]]:
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["code"] = supervisor.run()
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def verdict_kinds(gatekeeper: Gatekeeper) -> list[str]:
    return [
        r.kind
        for r in gatekeeper.log.records()
        if r.kind
        in (
            DecisionKind.ACCEPTED,
            DecisionKind.REJECTED,
            DecisionKind.NEEDS_APPROVAL,
            DecisionKind.INFRASTRUCTURE_ERROR,
            DecisionKind.PROPOSAL_DROPPED,
        )
    ]
