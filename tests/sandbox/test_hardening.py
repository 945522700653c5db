"""Every container the sandbox starts meets the hardening policy, seen from outside and inside."""

from __future__ import annotations

import time
import uuid

import pytest

from sandbox import ContainerSpec, Limits

pytestmark = pytest.mark.docker


def spec_for(image: str, instance: str, command: list[str], **overrides) -> ContainerSpec:
    return ContainerSpec(
        image=image,
        command=command,
        run_id=f"run-{uuid.uuid4().hex[:8]}",
        role="probe",
        instance=instance,
        **overrides,
    )


def python(code: str) -> list[str]:
    return ["python3", "-c", code]


def test_inspect_shows_every_hardening_setting(docker_engine, agent_image, sandbox_instance):
    spec = spec_for(
        agent_image,
        sandbox_instance,
        ["sleep", "30"],
        limits=Limits(memory_mb=128, cpus=0.5, pids=64, tmpfs_mb=16, log_max_mb=2),
    )
    running = docker_engine.start(spec)
    try:
        info = docker_engine.inspect(running.id)
    finally:
        running.remove()
    host = info["HostConfig"]
    assert host["CapDrop"] == ["ALL"]
    assert not host.get("CapAdd")
    assert host["SecurityOpt"][0] == "no-new-privileges:true"
    assert [opt.split("=", 1)[0] for opt in host["SecurityOpt"]] == ["no-new-privileges:true", "seccomp"]
    assert host["ReadonlyRootfs"] is True
    assert host["Tmpfs"] == {"/tmp": "rw,nosuid,nodev,size=16m"}
    assert host["Memory"] == 128 * 1024 * 1024
    assert host["MemorySwap"] == host["Memory"]
    assert host["NanoCpus"] == 500_000_000
    assert host["PidsLimit"] == 64
    assert host["Init"] is True
    assert host["Privileged"] is False
    assert host["NetworkMode"] == "none"
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-file": "1", "max-size": "2m"}}
    assert info["Config"]["User"] == "10001:10001"
    labels = info["Config"]["Labels"]
    assert labels["io.ouroboros.managed"] == "1"
    assert labels["io.ouroboros.run-id"] == spec.run_id
    assert labels["io.ouroboros.instance"] == sandbox_instance
    mounted = [m.get("Source", "") for m in info["Mounts"]]
    assert not any("docker.sock" in source for source in mounted)


def test_the_docker_socket_cannot_be_mounted(tmp_path):
    from pydantic import ValidationError

    from sandbox import Mount

    with pytest.raises(ValidationError, match="Docker socket"):
        Mount(source="/var/run/docker.sock", target="/var/run/docker.sock")


def test_root_user_is_refused():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="never run as root"):
        ContainerSpec(image="x", command=["true"], run_id="r", role="probe", user="0:0")


def test_inside_the_process_is_not_root_and_root_fs_is_read_only(docker_engine, agent_image, sandbox_instance):
    script = (
        "import os\n"
        "print('uid', os.getuid())\n"
        "try:\n    open('/written', 'w')\n    print('root-fs writable')\n"
        "except OSError as e:\n    print('root-fs refused', e.errno)\n"
        "open('/tmp/ok', 'w').write('x'); print('tmp writable')\n"
        "print('caps', open('/proc/self/status').read().split('CapEff:')[1].split()[0])\n"
        "print('nnp', open('/proc/self/status').read().split('NoNewPrivs:')[1].split()[0])\n"
    )
    result = docker_engine.run(spec_for(agent_image, sandbox_instance, python(script)), deadline_s=60)
    assert result.exit_code == 0, result.output
    assert "uid 10001" in result.output
    assert "root-fs refused 30" in result.output  # EROFS
    assert "tmp writable" in result.output
    assert "caps 0000000000000000" in result.output
    assert "nnp 1" in result.output


def test_fork_bomb_is_stopped_by_the_pids_limit(docker_engine, agent_image, sandbox_instance):
    script = (
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    while True:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(60); os._exit(0)\n"
        "        n += 1\n"
        "except OSError as e:\n"
        "    print('fork refused after', n, 'errno', e.errno)\n"
    )
    spec = spec_for(agent_image, sandbox_instance, python(script), limits=Limits(pids=32))
    result = docker_engine.run(spec, deadline_s=60)
    assert "fork refused after" in result.output, result.output
    forks = int(result.output.split("fork refused after")[1].split()[0])
    assert forks < 32


def test_memory_hog_is_killed(docker_engine, agent_image, sandbox_instance):
    script = "chunks = []\nwhile True:\n    chunks.append(bytearray(16 * 1024 * 1024))\n"
    spec = spec_for(agent_image, sandbox_instance, python(script), limits=Limits(memory_mb=64))
    result = docker_engine.run(spec, deadline_s=60)
    assert not result.timed_out
    assert result.exit_code == 137  # SIGKILL from the OOM killer, with no swap to hide in


def test_no_network_is_reachable(docker_engine, agent_image, sandbox_instance):
    # No packet needs to leave to prove it: only loopback exists, there is no route, names fail.
    script = (
        "import os, socket\n"
        "print('interfaces', sorted(os.listdir('/sys/class/net')))\n"
        "routes = open('/proc/net/route').read().splitlines()[1:]\n"
        "print('routes', len(routes))\n"
        "try:\n    socket.getaddrinfo('example.com', 443)\n    print('dns resolved')\n"
        "except OSError:\n    print('dns failed')\n"
    )
    result = docker_engine.run(spec_for(agent_image, sandbox_instance, python(script)), deadline_s=60)
    assert result.exit_code == 0, result.output
    assert "interfaces ['lo']" in result.output
    assert "routes 0" in result.output
    assert "dns failed" in result.output


def test_deadline_kills_and_removes_sleep_infinity(docker_engine, agent_image, sandbox_instance):
    spec = spec_for(agent_image, sandbox_instance, ["sleep", "infinity"])
    started = time.monotonic()
    result = docker_engine.run(spec, deadline_s=2)
    gone_after = time.monotonic() - started
    assert result.timed_out
    assert result.exit_code is None
    assert not docker_engine.exists(result.container_id)
    assert 2 <= gone_after < 2 + 8, f"took {gone_after:.1f} s to be killed and removed"


def test_output_is_streamed_and_capped(docker_engine, agent_image, sandbox_instance):
    script = (
        "import sys\nfor i in range(50000):\n    sys.stdout.write(f'line {i:06d} ' + 'x' * 90 + '\\n')\nprint('END')\n"
    )
    result = docker_engine.run(
        spec_for(agent_image, sandbox_instance, python(script)), deadline_s=60, output_cap=64_000
    )
    assert result.exit_code == 0
    assert result.truncated
    assert result.output_bytes > 5_000_000
    assert len(result.output) < 70_000
    assert result.output.startswith("line 000000")
    assert result.output.rstrip().endswith("END")
    assert "bytes omitted" in result.output


def test_reconcile_removes_our_leftovers_and_leaves_others_alone(docker_engine, agent_image, sandbox_instance):
    ours = docker_engine.start(spec_for(agent_image, sandbox_instance, ["sleep", "300"]))
    # Same image and a similar name, but no label of ours: reconcile must not touch it.
    foreign = docker_engine.client.containers.run(
        agent_image, ["sleep", "300"], detach=True, name=f"ouroboros-lookalike-{uuid.uuid4().hex[:6]}"
    )
    try:
        removed = docker_engine.reconcile(instance=sandbox_instance)
        assert removed == [ours.id]
        assert not docker_engine.exists(ours.id)
        assert docker_engine.exists(foreign.id)
    finally:
        foreign.remove(force=True)


def test_reconcile_keeps_named_runs(docker_engine, agent_image, sandbox_instance):
    kept_spec = spec_for(agent_image, sandbox_instance, ["sleep", "300"])
    kept = docker_engine.start(kept_spec)
    stale = docker_engine.start(spec_for(agent_image, sandbox_instance, ["sleep", "300"]))
    removed = docker_engine.reconcile(instance=sandbox_instance, keep_run_ids={kept_spec.run_id})
    assert removed == [stale.id]
    assert docker_engine.exists(kept.id)
    kept.remove()
