"""A demo instance for the console tests: the real demo run (two generations, one rejected
candidate), plus one more candidate, judged by the real gatekeeper, whose summary is hostile."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from supervisor.cli.demo import run_demo
from supervisor.console.server import ConsoleServer
from supervisor.console.view import InstanceView
from supervisor.gate.gatekeeper import Gatekeeper
from supervisor.store.instance import Instance
from supervisor.store.protocol import Proposal

HOSTILE = "<script>document.title='pwned'</script>\x1b[2J\x1b]0;owned\x07<b>bold</b> \u202eevil"


@pytest.fixture(scope="session")
def demo(tmp_path_factory, docker_engine, agent_image) -> Instance:
    instance, verdicts, _task_ids = run_demo(tmp_path_factory.mktemp("console") / "demo", progress=lambda message: None)
    assert [v.state for v in verdicts] == ["accepted", "rejected"]
    gatekeeper = Gatekeeper(
        instance.repo,
        engine=docker_engine,
        journal_root=instance.journal,
        image=agent_image,
        instance=instance.instance_id,
    )
    candidate = gatekeeper.create_candidate()
    # It changes nothing, so the real gatekeeper rejects it without a container: it is judged all the same.
    verdict = gatekeeper.submit(
        candidate,
        Proposal(
            version=1, kind="proposal", id=uuid.uuid4().hex, summary=HOSTILE, why=HOSTILE, created_at=datetime.now(UTC)
        ),
    )
    assert verdict.state == "rejected"
    yield instance
    docker_engine.reconcile(instance=instance.instance_id)


@pytest.fixture
def console(demo):
    server = ConsoleServer(InstanceView(demo), "127.0.0.1", 0, None)
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()
