"""A hard cap on what the agent can write on the host: each writable area on its own small filesystem.

The agent writes into three host directories (its candidate worktrees, its memory, its outbox). A
bind mount carries no size limit, so each of them becomes the mount point of a size-capped ext4
image (`HOME/disk/<name>.img`, loop-mounted `nosuid,nodev`). Writing past the cap fails with ENOSPC
inside the container; the host's own filesystem only ever holds the image files.

Crash-only: a directory that is already a mount point is left as it is (a previous start mounted
it; mounts stay across a clean stop too, so the CLI and git see the same files while it is
stopped). A directory that already holds files (memory after `supervisor init`, or files written
while the image was not mounted, e.g. after a reboot) is copied into the image (`<name>.populated`
beside the image records the first copy), set aside, and the image mounted in its place; the old
copy is deleted once the mount holds, and put back if the mount fails. A kill anywhere in between
only repeats a step at the next start.

Needs root (mount) and e2fsprogs. Without root, `mode = "auto"` leaves the directories uncapped and
says so; `mode = "loop"` refuses to start. docs/sandbox.md describes the alternative of mounting
capped filesystems there yourself (a partition, XFS project quotas, ...): mount points are respected.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from supervisor.base.errors import ConfigError

log = logging.getLogger("ouroboros.disk")

POPULATED = ".populated"
Mode = Literal["auto", "loop", "off"]


@dataclass(frozen=True)
class CappedArea:
    name: str
    directory: Path
    size_mb: int


@dataclass(frozen=True)
class AreaUse:
    name: str
    directory: Path
    used_mb: float
    size_mb: float

    @property
    def full(self) -> bool:
        return self.size_mb - self.used_mb < max(1.0, self.size_mb * 0.01)


def agent_areas(
    *, worktrees: Path, memory: Path, outbox: Path, workspace_mb: int, memory_mb: int, outbox_mb: int
) -> list[CappedArea]:
    """The three places an agent writes on the host."""
    return [
        CappedArea("workspace", worktrees, workspace_mb),
        CappedArea("memory", memory, memory_mb),
        CappedArea("outbox", outbox, outbox_mb),
    ]


def cap_areas(areas: list[CappedArea], images: Path, mode: Mode, owner: int | None = None) -> list[str]:
    """Mount each area on its own capped filesystem; returns what was done (for the journal)."""
    if mode == "off":
        return []
    if os.geteuid() != 0 or shutil.which("mkfs.ext4") is None:
        reason = "not root" if os.geteuid() != 0 else "mkfs.ext4 (e2fsprogs) is missing"
        if mode == "loop":
            raise ConfigError(f'disk caps need loop mounts, but {reason}; run as root or set [disk] mode = "off"')
        return [f"agent disk areas are NOT size-capped ({reason}); see docs/sandbox.md for an alternative"]
    done = []
    for area in areas:
        if os.path.ismount(area.directory):
            continue
        try:
            _mount_capped(area, images, owner)
        except ConfigError as exc:
            if mode == "loop":
                raise
            done.append(f"agent disk area {area.name} is NOT size-capped: {exc}")  # auto: say so, run on
            continue
        done.append(f"{area.name}: {area.directory} capped at {area.size_mb} MB")
    return done


def usage(areas: list[CappedArea]) -> list[AreaUse]:
    """How full each capped area is (areas that are not mount points are skipped)."""
    found = []
    for area in areas:
        if not os.path.ismount(area.directory):
            continue
        stats = os.statvfs(area.directory)
        size = stats.f_blocks * stats.f_frsize / 2**20
        free = stats.f_bavail * stats.f_frsize / 2**20
        found.append(AreaUse(area.name, area.directory, size - free, size))
    return found


class DiskWatch:
    """Says once when an area fills up (and again only after it had room again): for the journal."""

    def __init__(self, areas: list[CappedArea]) -> None:
        self._areas = areas
        self._full: set[str] = set()

    def newly_full(self) -> list[str]:
        messages = []
        for use in usage(self._areas):
            if use.full and use.name not in self._full:
                self._full.add(use.name)
                messages.append(
                    f"agent disk area {use.name} ({use.directory}) is full: {use.used_mb:.0f} of "
                    f"{use.size_mb:.0f} MB; the agent's writes there fail with ENOSPC"
                )
            elif not use.full:
                self._full.discard(use.name)
        return messages


def release(areas: list[CappedArea]) -> None:
    """Unmount the areas (their images stay, so the content survives to the next mount)."""
    for area in areas:
        if os.path.ismount(area.directory):
            _run(["umount", str(area.directory)])


def _mount_capped(area: CappedArea, images: Path, owner: int | None) -> None:
    images.mkdir(parents=True, exist_ok=True)
    image = images / f"{area.name}.img"
    if not image.exists():
        scratch = image.with_name(image.name + ".tmp")
        with open(scratch, "wb") as handle:
            handle.truncate(area.size_mb * 2**20)  # sparse: the host pays only for what is written
        _run(["mkfs.ext4", "-q", "-F", "-m", "0", str(scratch)])
        os.replace(scratch, image)
    area.directory.mkdir(parents=True, exist_ok=True)
    staging = images / f".{area.name}.staging"
    staging.mkdir(exist_ok=True)
    populated = images / f"{area.name}{POPULATED}"  # beside the image: the area holds only the agent's files
    _run(["mount", "-o", "loop,nosuid,nodev", str(image), str(staging)])
    try:
        lost_found = staging / "lost+found"
        if lost_found.is_dir() and not any(lost_found.iterdir()):
            lost_found.rmdir()  # mkfs made it; the area's users (git, the gatekeeper) expect only their own files
        leftovers = any(area.directory.iterdir())
        if leftovers and populated.exists():
            # Written while the image was not mounted (e.g. after a reboot): it joins the image.
            log.warning("agent disk area %s: merging files written outside its image into it", area.name)
        if leftovers or not populated.exists():
            _copy_tree(area.directory, staging)
        populated.touch()
        if owner is not None:
            os.chown(staging, owner, owner)
    finally:
        _run(["umount", str(staging)])
    _mount_over(image, area.directory)
    log.info("agent disk area %s: %s on %s (%d MB)", area.name, area.directory, image, area.size_mb)


def _copy_tree(source: Path, target: Path) -> None:
    """What the directory already holds goes into the image: owners, modes and links kept, no link followed."""
    _run(["cp", "-a", "--", f"{source}/.", str(target)])


def _mount_over(image: Path, directory: Path) -> None:
    """Mount the image at `directory`, whose old content (already copied into the image) is set
    aside first and deleted only once the mount holds: one copy of the data, never none."""
    aside = directory.with_name(f".{directory.name}.before-disk-cap")
    if aside.exists():
        shutil.rmtree(aside)  # left by a kill after an earlier copy into the image: already in it
    os.rename(directory, aside)
    directory.mkdir()
    stat = os.stat(aside)
    os.chmod(directory, stat.st_mode & 0o7777)
    os.chown(directory, stat.st_uid, stat.st_gid)
    try:
        _run(["mount", "-o", "loop,nosuid,nodev", str(image), str(directory)])
    except ConfigError:
        directory.rmdir()
        os.rename(aside, directory)
        raise
    shutil.rmtree(aside)


def _run(command: list[str]) -> None:
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = _stderr(exc)
        raise ConfigError(
            f"`{' '.join(command)}` failed: {exc} {detail.decode(errors='replace').strip()}; "
            'check that loop devices are available, or set [disk] mode = "off"'
        ) from exc


def _stderr(exc: BaseException) -> bytes:
    """What a command that ran said on stderr (nothing if it could not be started)."""
    if isinstance(exc, (subprocess.CalledProcessError, subprocess.TimeoutExpired)):
        return exc.stderr or b""
    return b""
