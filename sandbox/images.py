"""The agent/gate image: built offline from a wheelhouse, tagged by a hash of what goes into it.

The tag is a content hash of the Dockerfile, the dependency lock and the base image's id, so an
unchanged input set is a single `docker image inspect` away (the rebuild check costs well under
a second) and the agent's code, which is mounted per generation, never triggers a build.
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

import docker.errors

from sandbox.engine import DOCKER_ERRORS, DockerEngine
from sandbox.errors import ImageBuildError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
OFFLINE_BASE = "ouroboros-base:bookworm"
AGENT_REPOSITORY = "ouroboros-agent"
DOCKERFILE = PROJECT_ROOT / "Dockerfile.agent"
LOCK_FILE = PROJECT_ROOT / "agent_image" / "requirements.lock"
BASE_PACKAGES = "python3,python3-venv,git,ca-certificates"

Progress = Callable[[str], None]


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def configured_base() -> str:
    """The base image: OUROBOROS_BASE_IMAGE (e.g. python:3.11-slim) or the offline one."""
    return os.environ.get("OUROBOROS_BASE_IMAGE", OFFLINE_BASE)


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


def ensure_agent_image(
    engine: DockerEngine | None = None, base: str | None = None, progress: Progress = _say
) -> str:
    """Return the tag of an up-to-date agent image, building it (and its base) only if needed."""
    engine = engine or DockerEngine.connect()
    base = base or configured_base()
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
            return engine.client.images.pull(base).id
        except DOCKER_ERRORS as exc:
            raise ImageBuildError(
                f"base image {base} is not present and could not be pulled ({exc}); "
                f"unset OUROBOROS_BASE_IMAGE to build the offline base {OFFLINE_BASE} instead"
            ) from exc
    return build_offline_base(engine, progress)


def build_offline_base(engine: DockerEngine, progress: Progress = _say) -> str:
    """Make a Debian bookworm base with debootstrap and import it: no registry needed."""
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not Path(debootstrap).exists():
        raise ImageBuildError(
            "the offline base image needs debootstrap: run `apt-get install -y debootstrap` as root, "
            "or set OUROBOROS_BASE_IMAGE to a pullable Python 3.11 image such as python:3.11-slim"
        )
    if os.geteuid() != 0:
        raise ImageBuildError("building the offline base image with debootstrap needs root")
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
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--python-version", "3.11", "-r", str(LOCK_FILE), "-d", str(target)],
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
                path=context, tag=tag, buildargs={"BASE": base}, rm=True, forcerm=True, decode=True,
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
