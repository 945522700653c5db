"""The project's own seccomp profile, proven from inside a real container: each refused call fails,
and what an agent, git and a test suite need still works."""

from __future__ import annotations

import json
import uuid

import pytest

from sandbox import ContainerSpec
from sandbox.seccomp import REFUSED, allowed_syscalls, profile

# Runs inside the container; one JSON line per probe: the call, and the errno it failed with (0: it worked).
PROBE = r"""
import ctypes, errno, json, os, socket, subprocess, threading
libc = ctypes.CDLL(None, use_errno=True)
def syscall(number, *args):
    result = libc.syscall(number, *args)
    return 0 if result >= 0 else ctypes.get_errno()
def family(name, number, kind=socket.SOCK_STREAM):
    try:
        socket.socket(number, kind).close()
        return 0
    except OSError as exc:
        return exc.errno
params = (ctypes.c_ubyte * 120)()
found = {
    "AF_VSOCK": family("AF_VSOCK", 40),
    "AF_PACKET": family("AF_PACKET", 17, socket.SOCK_DGRAM),
    "AF_ALG": family("AF_ALG", 38, socket.SOCK_SEQPACKET),
    "AF_KEY": family("AF_KEY", 15, socket.SOCK_RAW),
    "AF_BLUETOOTH": family("AF_BLUETOOTH", 31, socket.SOCK_RAW),
    "io_uring_setup": syscall(425, 4, ctypes.byref(params)),
    "io_uring_enter": syscall(426, 0, 0, 0, 0, 0, 0),
    "io_uring_register": syscall(427, 0, 0, 0, 0),
    "ptrace": syscall(101, 0, 0, 0, 0),  # PTRACE_TRACEME
    "userfaultfd": syscall(323, 0),
    "perf_event_open": syscall(298, 0, 0, -1, -1, 0),
    "unshare_user": syscall(272, 0x10000000),
    "AF_UNIX": family("AF_UNIX", socket.AF_UNIX),
    "AF_INET": family("AF_INET", socket.AF_INET),
    "AF_INET6": family("AF_INET6", socket.AF_INET6),
}
thread = threading.Thread(target=lambda: None); thread.start(); thread.join()
found["thread"] = 0
found["subprocess_git"] = subprocess.run(["git", "--version"], capture_output=True).returncode
found["fork"] = 0 if os.fork() == 0 and os._exit(0) is None else os.wait()[1]
print(json.dumps(found), flush=True)
"""


def test_the_profile_refuses_what_no_agent_needs():
    allowed = set(allowed_syscalls())
    assert not allowed & set(REFUSED)
    rules = profile()["syscalls"]
    families = sorted(r["args"][0]["value"] for r in rules if r["names"] == ["socket"])
    assert families == [1, 2, 10, 16]  # AF_UNIX, AF_INET, AF_INET6, AF_NETLINK only
    assert profile()["defaultAction"] == "SCMP_ACT_ERRNO"


@pytest.mark.docker
@pytest.mark.parametrize("role", ["agent", "gate"])
def test_refused_calls_fail_inside_every_container(docker_engine, agent_image, sandbox_instance, role):
    spec = ContainerSpec(
        image=agent_image,
        command=["python3", "-c", PROBE],
        run_id=f"sec-{uuid.uuid4().hex[:8]}",
        role=role,
        instance=sandbox_instance,
    )
    result = docker_engine.run(spec, deadline_s=60)
    assert result.exit_code == 0, result.output
    found = json.loads([line for line in result.output.splitlines() if line.startswith("{")][-1])
    for refused in (
        "AF_VSOCK",
        "AF_PACKET",
        "AF_ALG",
        "AF_KEY",
        "AF_BLUETOOTH",
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
        "ptrace",
        "userfaultfd",
        "perf_event_open",
        "unshare_user",
    ):
        assert found[refused] == 1, (refused, found[refused])  # EPERM from our profile
    for needed in ("AF_UNIX", "AF_INET", "AF_INET6", "thread", "subprocess_git", "fork"):
        assert found[needed] == 0, (needed, found[needed])
