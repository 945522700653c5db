"""The agent's writable areas are size-capped on the host: writing past the cap fails with ENOSPC
inside a real container, and the host's filesystem holds no more than the image."""

from __future__ import annotations

import json
import os
import shutil
import uuid

import pytest

from sandbox import ContainerSpec, Mount
from supervisor.loop.diskcap import CappedArea, DiskWatch, cap_areas, release, usage

pytestmark = pytest.mark.docker

FILL = r"""
import json, os
written, error = 0, None
chunk = os.urandom(1024 * 1024)
try:
    with open("/workspace/fill.bin", "wb") as out:
        for _ in range(64):
            out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
            written += len(chunk)
except OSError as exc:
    error = exc.errno
print(json.dumps({"written": written, "errno": error, "kept": open("/workspace/kept.txt").read()}), flush=True)
"""


@pytest.fixture
def capped(tmp_path):
    if os.geteuid() != 0 or shutil.which("mkfs.ext4") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true: the disk cap test needs root and e2fsprogs", pytrace=False)
        pytest.skip("needs root and e2fsprogs for loop mounts")
    area = CappedArea("workspace", tmp_path / "area", 16)
    area.directory.mkdir()
    (area.directory / "kept.txt").write_text("from before the cap")
    yield area, tmp_path / "disk"
    release([area])


def test_writing_past_the_cap_fails_with_enospc_inside_the_container(
    docker_engine, agent_image, sandbox_instance, capped
):
    area, images = capped
    done = cap_areas([area], images, "loop", owner=10001)
    assert done and os.path.ismount(area.directory)
    assert sorted(p.name for p in area.directory.iterdir()) == ["kept.txt"]  # nothing of ours in the area
    assert cap_areas([area], images, "loop", owner=10001) == []  # a second start finds it mounted
    spec = ContainerSpec(
        image=agent_image,
        command=["python3", "-c", FILL],
        run_id=f"disk-{uuid.uuid4().hex[:8]}",
        role="agent",
        instance=sandbox_instance,
        workdir="/workspace",
        mounts=[Mount(source=area.directory, target="/workspace", read_only=False)],
    )
    result = docker_engine.run(spec, deadline_s=120)
    assert result.exit_code == 0, result.output
    found = json.loads(result.output.strip().splitlines()[-1])
    assert found["errno"] == 28 and found["written"] <= 16 * 2**20
    assert found["kept"] == "from before the cap"  # what the directory held moved into the image
    image = images / "workspace.img"
    assert image.stat().st_blocks * 512 <= 17 * 2**20  # the host holds the capped image, nothing more
    watch = DiskWatch([area])
    assert [m for m in watch.newly_full() if "workspace" in m and "full" in m]
    assert watch.newly_full() == []  # said once
    assert usage([area])[0].full


def test_the_data_lives_in_the_image_and_files_written_while_unmounted_join_it(capped):
    area, images = capped
    cap_areas([area], images, "loop")
    (area.directory / "during.txt").write_text("written while mounted")
    release([area])
    assert sorted(p.name for p in area.directory.iterdir()) == []  # one copy of the data: the image's
    (area.directory / "after-reboot.txt").write_text("written while unmounted")
    cap_areas([area], images, "loop")
    assert sorted(p.name for p in area.directory.iterdir()) == ["after-reboot.txt", "during.txt", "kept.txt"]


def test_a_mount_that_fails_puts_the_directory_back_and_auto_mode_runs_on(capped, monkeypatch):
    from supervisor.loop import diskcap

    area, images = capped
    real_run = diskcap._run

    def failing_final_mount(command: list[str]) -> None:
        if command[0] == "mount" and command[-1] == str(area.directory):
            raise diskcap.ConfigError("no loop device left (simulated)")
        real_run(command)

    monkeypatch.setattr(diskcap, "_run", failing_final_mount)
    messages = cap_areas([area], images, "auto")
    assert "NOT size-capped" in messages[0] and not os.path.ismount(area.directory)
    assert (area.directory / "kept.txt").read_text() == "from before the cap"  # never without its data
    with pytest.raises(diskcap.ConfigError):
        cap_areas([area], images, "loop")
    assert (area.directory / "kept.txt").exists()
