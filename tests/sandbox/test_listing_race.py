"""Listing our containers while runs end: a container removed between the engine's listing and its
inspection must not fail the listing (`reconcile` and the listings share one way to list, used at
start and by operators while gates and acceptance runs remove their containers)."""

from __future__ import annotations

import threading
import uuid

import pytest

from sandbox import ContainerSpec

pytestmark = pytest.mark.docker


def test_listing_survives_containers_removed_mid_listing(docker_engine, agent_image, sandbox_instance):
    done = threading.Event()
    failures: list[BaseException] = []

    def churn() -> None:
        try:
            for _ in range(8):
                spec = ContainerSpec(
                    image=agent_image,
                    command=["true"],
                    run_id=f"run-{uuid.uuid4().hex[:8]}",
                    role="probe",
                    instance=sandbox_instance,
                )
                docker_engine.run(spec, deadline_s=30)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)
        finally:
            done.set()

    workers = [threading.Thread(target=churn) for _ in range(2)]
    for worker in workers:
        worker.start()
    listings = 0
    seen = 0
    while not done.is_set() or any(worker.is_alive() for worker in workers):
        found = docker_engine.managed(instance=sandbox_instance)
        listings += 1
        seen += len(found)
    for worker in workers:
        worker.join()
    assert not failures, failures
    assert listings > 0
    assert seen > 0, "no listing ever saw a run's container: the race was not exercised"
