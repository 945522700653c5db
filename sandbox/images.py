"""The agent/gate image: built offline from a wheelhouse, tagged by a hash of what goes into it.

The tag is a content hash of the Dockerfile, the dependency lock and the base image's id, so an
unchanged input set is a single `docker image inspect` away (the rebuild check costs well under
a second) and the agent's code, which is mounted per generation, never triggers a build.

Dockerfile.agent and the lock are read from the source checkout, else from the copies a wheel
carries as package data (`sandbox/image_context/`, put there by setup.py at build time).

The base, unless OUROBOROS_BASE_IMAGE names one: the offline base or the Python image if either is
present; else the Python image pulled from a registry; else (no registry) the offline base made
with debootstrap, which needs root; else an error that says what to set.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import cast

import docker.errors

from sandbox.engine import DOCKER_ERRORS, DockerEngine
from sandbox.errors import ImageBuildError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PACKAGED = Path(__file__).resolve().parent / "image_context"
OFFLINE_BASE = "ouroboros-base:bookworm"
PULLABLE_BASE = "python:3.11-slim-bookworm"
BASE_ENV = "OUROBOROS_BASE_IMAGE"
AGENT_REPOSITORY = "ouroboros-agent"


def _input_file(checkout: Path, packaged_name: str) -> Path:
    """The checkout's file if this runs from one (editable install, tests), else the packaged copy."""
    return checkout if checkout.is_file() else PACKAGED / packaged_name


DOCKERFILE = _input_file(PROJECT_ROOT / "Dockerfile.agent", "Dockerfile.agent")
LOCK_FILE = _input_file(PROJECT_ROOT / "agent_image" / "requirements.lock", "requirements.lock")
BASE_PACKAGES = "python3,python3-venv,git,ca-certificates"

Progress = Callable[[str], None]


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def configured_base() -> str:
    """The base image named by OUROBOROS_BASE_IMAGE, else the first choice (see resolve_base)."""
    return candidate_bases()[0]


def candidate_bases() -> list[str]:
    named = os.environ.get(BASE_ENV)
    return [named] if named else [OFFLINE_BASE, PULLABLE_BASE]


def resolve_base(engine: DockerEngine, progress: Progress = _say) -> str:
    """Which base to build on (see the module docstring); pulls the Python image if it must."""
    bases = candidate_bases()
    if len(bases) == 1:
        return bases[0]
    present = next((name for name in bases if image_id(engine, name)), None)
    if present:
        return present
    progress(f"pulling base image {PULLABLE_BASE} ...")
    try:
        engine.long_api.pull(PULLABLE_BASE)
        return PULLABLE_BASE
    except DOCKER_ERRORS as exc:
        pull_error = str(exc)
    if os.geteuid() == 0 and _debootstrap() is not None:
        progress(f"no registry answered ({pull_error[:200]}); building the offline base instead")
        return OFFLINE_BASE
    raise ImageBuildError(
        f"no base image for the agent image: {PULLABLE_BASE} could not be pulled ({pull_error[:300]}) and the "
        f"offline base {OFFLINE_BASE} needs debootstrap run as root. Set {BASE_ENV} to a Debian-based Python "
        f"3.11 image that this engine has or can pull (e.g. a registry mirror), or run `supervisor image build` "
        f"once as root with debootstrap installed (`apt-get install -y debootstrap`)"
    )


def _debootstrap() -> str | None:
    found = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    return found if Path(found).exists() else None


def image_id(engine: DockerEngine, name: str) -> str | None:
    try:
        return engine.client.images.get(name).id
    except docker.errors.ImageNotFound:
        return None
    except DOCKER_ERRORS as exc:
        raise ImageBuildError(f"could not inspect image {name}: {exc}") from exc


def agent_image_tag(base_id: str) -> str:
    digest = hashlib.sha256()
    for part in (DOCKERFILE.read_bytes(), LOCK_FILE.read_bytes(), base_id.encode()):
        digest.update(hashlib.sha256(part).digest())
    return f"{AGENT_REPOSITORY}:{digest.hexdigest()[:16]}"


def ensure_agent_image(engine: DockerEngine | None = None, base: str | None = None, progress: Progress = _say) -> str:
    """Return the tag of an up-to-date agent image, building it (and its base) only if needed."""
    engine = engine or DockerEngine.connect()
    base = base or resolve_base(engine, progress)
    base_id = ensure_base_image(engine, base, progress)
    tag = agent_image_tag(base_id)
    if image_id(engine, tag) is None:
        _build_agent_image(engine, base, tag, progress)
    return tag


def ensure_base_image(engine: DockerEngine, base: str, progress: Progress = _say) -> str:
    existing = image_id(engine, base)
    if existing:
        return existing
    if base != OFFLINE_BASE:
        progress(f"pulling base image {base} ...")
        try:
            return cast(str, engine.client.images.pull(base).id)  # a pulled image always has an Id
        except DOCKER_ERRORS as exc:
            raise ImageBuildError(
                f"base image {base} is not present and could not be pulled ({exc}); set {BASE_ENV} to an "
                f"image this engine has (`docker images`), or unset it to let the supervisor choose"
            ) from exc
    return build_offline_base(engine, progress)


def build_offline_base(engine: DockerEngine, progress: Progress = _say) -> str:
    """Make a Debian bookworm base with debootstrap and import it: no registry needed."""
    debootstrap = _debootstrap()
    if debootstrap is None:
        raise ImageBuildError(
            "the offline base image needs debootstrap: run `apt-get install -y debootstrap` as root, "
            f"or set {BASE_ENV} to a pullable Python 3.11 image such as {PULLABLE_BASE}"
        )
    if os.geteuid() != 0:
        raise ImageBuildError(
            f"building the offline base image with debootstrap needs root: run `supervisor image build` once as "
            f"root, or set {BASE_ENV} to a Python 3.11 image this engine has or can pull (e.g. {PULLABLE_BASE})"
        )
    with tempfile.TemporaryDirectory(prefix="ouroboros-base-", dir="/var/tmp") as scratch:
        rootfs = Path(scratch) / "rootfs"
        progress(f"building offline base {OFFLINE_BASE} with debootstrap (about a minute) ...")
        _run_checked(
            [debootstrap, "--variant=minbase", f"--include={BASE_PACKAGES}", "bookworm", str(rootfs)],
            "debootstrap",
        )
        archive = Path(scratch) / "rootfs.tar"
        _run_checked(["tar", "-C", str(rootfs), "-cf", str(archive), "."], "tar")
        progress(f"importing {OFFLINE_BASE} ...")
        repository, tag = OFFLINE_BASE.split(":")
        try:
            engine.long_api.import_image_from_file(str(archive), repository=repository, tag=tag)
        except DOCKER_ERRORS as exc:
            raise ImageBuildError(f"docker import of the offline base failed: {exc}") from exc
    built = image_id(engine, OFFLINE_BASE)
    if built is None:
        raise ImageBuildError(f"{OFFLINE_BASE} was imported but cannot be found")
    return built


def build_wheelhouse(progress: Progress = _say) -> Path:
    """Download the locked wheels once per lock content, on the host (the build has no index)."""
    lock_hash = hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ouroboros"
    target = cache / f"wheelhouse-{lock_hash}"
    if (target / ".complete").exists():
        return target
    progress(f"downloading locked wheels into {target} ...")
    target.mkdir(parents=True, exist_ok=True)
    _run_checked(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.11",
            "-r",
            str(LOCK_FILE),
            "-d",
            str(target),
        ],
        "pip download",
    )
    (target / ".complete").touch()
    return target


def _build_agent_image(engine: DockerEngine, base: str, tag: str, progress: Progress) -> None:
    wheelhouse = build_wheelhouse(progress)
    progress(f"building {tag} from {base} ...")
    with tempfile.TemporaryDirectory(prefix="ouroboros-image-") as context:
        shutil.copy(DOCKERFILE, Path(context) / "Dockerfile")
        shutil.copy(LOCK_FILE, Path(context) / "requirements.lock")
        shutil.copytree(wheelhouse, Path(context) / "wheelhouse", ignore=shutil.ignore_patterns(".complete"))
        try:
            # A build step may print nothing for minutes (apt-get on a pulled base): no read timeout.
            for line in engine.long_api.build(
                path=context,
                tag=tag,
                buildargs={"BASE": base},
                rm=True,
                forcerm=True,
                decode=True,
                labels={"io.ouroboros.managed": "1"},
            ):
                if "error" in line:
                    raise ImageBuildError(f"building {tag} failed: {line['error'].strip()}")
                text = line.get("stream", "").strip()
                if text.startswith("Step "):
                    progress(f"  {text}")
        except DOCKER_ERRORS as exc:
            raise ImageBuildError(f"building {tag} failed: {exc}") from exc
    if image_id(engine, tag) is None:
        raise ImageBuildError(f"the build of {tag} finished but the image is missing")


def _run_checked(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip()[-2000:]
        raise ImageBuildError(f"{what} failed with exit code {result.returncode}:\n{tail}")
