"""Review: removing one of our containers that someone else is removing at that moment.

The listing already ignores containers removed mid-listing; their removal has the same race: the
engine answers 409 "removal of container ... is already in progress" to the second remover (two
reconciles, an operator's `containers` clean-up during the supervisor's reconcile, a run's own
final removal during a reconcile). The container is going either way: that is not an engine error.
"""

from __future__ import annotations

import threading
import uuid

import pytest

from sandbox import ContainerSpec

pytestmark = pytest.mark.docker


def test_two_removals_of_one_container_at_once_both_succeed(docker_engine, agent_image, sandbox_instance):
    failures: list[BaseException] = []
    for _ in range(3):
        spec = ContainerSpec(
            image=agent_image,
            command=["sleep", "30"],
            run_id=f"run-{uuid.uuid4().hex[:8]}",
            role="probe",
            instance=sandbox_instance,
        )
        container = docker_engine.start(spec)
        barrier = threading.Barrier(2)

        def reconcile(barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                docker_engine.reconcile(instance=sandbox_instance)
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)

        removers = [threading.Thread(target=reconcile) for _ in range(2)]
        for remover in removers:
            remover.start()
        for remover in removers:
            remover.join(60)
        docker_engine.reconcile(instance=sandbox_instance)  # clean up whatever a failure left
        assert not docker_engine.exists(container.id)
    assert not failures, [str(f)[:300] for f in failures]
