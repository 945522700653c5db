"""Which base the agent image is built on: named, present, pulled, debootstrap (root only), or a
message saying what to set. The engine is a double here (no registry answers on this machine);
tests/operator/test_ci_workflow.py builds from a wheel against the real engine."""

from __future__ import annotations

import docker.errors
import pytest

from sandbox import images
from sandbox.errors import ImageBuildError


class FakeImages:
    def __init__(self, present: set[str]) -> None:
        self.present = present

    def get(self, name: str):
        if name not in self.present:
            raise docker.errors.ImageNotFound(name)
        return type("Image", (), {"id": f"sha256:{name}"})()


class FakeEngine:
    def __init__(self, present: set[str], registry: bool) -> None:
        self.client = type("Client", (), {"images": FakeImages(present)})()
        self.pulled: list[str] = []
        outer = self

        class Api:
            def pull(self, name: str):
                if not registry:
                    raise docker.errors.APIError("dial tcp: lookup registry: no such host")
                outer.pulled.append(name)
                outer.client.images.present.add(name)

        self.long_api = Api()


@pytest.fixture(autouse=True)
def _no_named_base(monkeypatch):
    monkeypatch.delenv(images.BASE_ENV, raising=False)


def test_a_named_base_wins(monkeypatch) -> None:
    monkeypatch.setenv(images.BASE_ENV, "registry.local/python:3.11")
    assert (
        images.resolve_base(FakeEngine(set(), registry=False), progress=lambda _m: None) == "registry.local/python:3.11"
    )


def test_a_present_base_is_used_without_pulling() -> None:
    engine = FakeEngine({images.PULLABLE_BASE}, registry=True)
    assert images.resolve_base(engine, progress=lambda _m: None) == images.PULLABLE_BASE and engine.pulled == []


def test_the_python_image_is_pulled_when_a_registry_answers() -> None:
    engine = FakeEngine(set(), registry=True)
    assert images.resolve_base(engine, progress=lambda _m: None) == images.PULLABLE_BASE
    assert engine.pulled == [images.PULLABLE_BASE]


def test_offline_and_root_with_debootstrap_builds_the_offline_base(monkeypatch) -> None:
    monkeypatch.setattr(images.os, "geteuid", lambda: 0)
    monkeypatch.setattr(images, "_debootstrap", lambda: "/usr/sbin/debootstrap")
    assert images.resolve_base(FakeEngine(set(), registry=False), progress=lambda _m: None) == images.OFFLINE_BASE


def test_offline_and_not_root_says_what_to_set(monkeypatch) -> None:
    monkeypatch.setattr(images.os, "geteuid", lambda: 1000)
    with pytest.raises(ImageBuildError, match=f"Set {images.BASE_ENV}.*as root"):
        images.resolve_base(FakeEngine(set(), registry=False), progress=lambda _m: None)


def test_the_packaged_image_inputs_are_used_outside_a_checkout(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(images, "PACKAGED", tmp_path)
    assert (
        images._input_file(tmp_path / "absent" / "Dockerfile.agent", "Dockerfile.agent")
        == tmp_path / "Dockerfile.agent"
    )
    assert images._input_file(images.PROJECT_ROOT / "Dockerfile.agent", "x") == images.PROJECT_ROOT / "Dockerfile.agent"
