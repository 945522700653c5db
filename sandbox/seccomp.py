"""The project's own seccomp profile, applied to every container (see docs/sandbox.md).

The engine's default profile depends on the engine's age (Debian's 20.10 lets `socket(AF_VSOCK)`
and `io_uring_*` through). This one is an allow-list written for what an agent, git and a test
suite need, with every capability already dropped:

- everything not listed fails with EPERM;
- `socket()` only for AF_UNIX, AF_INET, AF_INET6 and AF_NETLINK (no AF_VSOCK, AF_PACKET, AF_ALG,
  AF_KEY, Bluetooth, ...), and no `socketcall`, the 32-bit multiplexer that would hide the family;
- no io_uring, ptrace, process_vm_*, userfaultfd, perf_event_open, bpf, keyctl, mount or namespace
  calls (`clone` with any CLONE_NEW* flag fails; `clone3` answers ENOSYS so libc falls back to clone);
- only the native 64-bit ABI: 32-bit (x86, x32, arm) system calls fail.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

EPERM = 1
ENOSYS = 38

SOCKET_FAMILIES = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16}
# CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET: clone() must set none of them.
CLONE_NAMESPACE_FLAGS = 0x7E020000
# personality(): only the ordinary personas (PER_LINUX, PER_LINUX32, UNAME26 forms, and the query).
PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

REFUSED = (
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "userfaultfd",
    "perf_event_open",
    "bpf",
    "keyctl",
    "add_key",
    "request_key",
    "mount",
    "umount2",
    "unshare",
    "setns",
    "socketcall",
    "kexec_load",
    "init_module",
    "open_by_handle_at",
    "name_to_handle_at",
)

_FILES = """
access faccessat faccessat2 open openat openat2 creat close close_range read readv pread64 preadv preadv2
write writev pwrite64 pwritev pwritev2 lseek stat lstat fstat newfstatat statx statfs fstatfs
getdents getdents64 getcwd chdir fchdir mkdir mkdirat rmdir rename renameat renameat2 link linkat symlink symlinkat
unlink unlinkat readlink readlinkat chmod fchmod fchmodat fchmodat2 chown fchown fchownat lchown umask truncate ftruncate
fallocate fsync fdatasync sync syncfs sync_file_range flock fcntl dup dup2 dup3 pipe pipe2 utime utimes utimensat
futimesat copy_file_range sendfile splice tee vmsplice fadvise64 readahead getxattr lgetxattr fgetxattr
setxattr lsetxattr fsetxattr listxattr llistxattr flistxattr removexattr lremovexattr fremovexattr
inotify_init inotify_init1 inotify_add_watch inotify_rm_watch mknod mknodat ioctl memfd_create
"""
_MEMORY = """
brk mmap munmap mremap mprotect madvise mincore msync mlock mlock2 munlock mlockall munlockall membarrier
pkey_alloc pkey_free pkey_mprotect
"""
_PROCESSES = """
execve execveat exit exit_group fork vfork wait4 waitid kill tkill tgkill getpid getppid gettid getpgid
getpgrp setpgid getsid setsid getuid geteuid getgid getegid getresuid getresgid getgroups setuid setgid
setreuid setregid setresuid setresgid setgroups setfsuid setfsgid capget capset prctl getrlimit setrlimit
prlimit64 getrusage getpriority setpriority sched_yield sched_getaffinity sched_setaffinity sched_getparam
sched_setparam sched_getscheduler sched_setscheduler sched_get_priority_max sched_get_priority_min
sched_rr_get_interval sched_getattr sched_setattr set_tid_address set_robust_list get_robust_list rseq
futex futex_waitv uname sysinfo times getcpu getrandom ioprio_get ioprio_set pidfd_open pidfd_send_signal
restart_syscall seccomp
"""
_SIGNALS_AND_TIME = """
rt_sigaction rt_sigprocmask rt_sigreturn rt_sigpending rt_sigsuspend rt_sigtimedwait rt_sigqueueinfo
rt_tgsigqueueinfo sigaltstack signalfd signalfd4 pause alarm nanosleep clock_nanosleep clock_gettime
clock_getres gettimeofday time getitimer setitimer timer_create timer_delete timer_gettime timer_settime
timer_getoverrun timerfd_create timerfd_gettime timerfd_settime eventfd eventfd2
"""
_WAITING = """
poll ppoll select pselect6 epoll_create epoll_create1 epoll_ctl epoll_wait epoll_pwait epoll_pwait2
io_setup io_destroy io_submit io_cancel io_getevents io_pgetevents
"""
_SOCKETS = """
socketpair bind listen accept accept4 connect getsockname getpeername getsockopt setsockopt shutdown
sendto sendmsg sendmmsg recvfrom recvmsg recvmmsg
"""
_IPC = """
shmget shmat shmdt shmctl semget semop semtimedop semctl msgget msgsnd msgrcv msgctl mq_open mq_unlink
mq_timedsend mq_timedreceive mq_notify mq_getsetattr
"""
_ARCH = {
    "SCMP_ARCH_X86_64": "arch_prctl modify_ldt set_thread_area get_thread_area",
    "SCMP_ARCH_AARCH64": "",
}


def allowed_syscalls() -> list[str]:
    names = " ".join((_FILES, _MEMORY, _PROCESSES, _SIGNALS_AND_TIME, _WAITING, _SOCKETS, _IPC, *_ARCH.values()))
    allowed = sorted(set(names.split()))
    leaked = set(allowed) & set(REFUSED)
    if leaked:  # a guard against a careless edit of the lists above
        raise ValueError(f"seccomp profile allows refused calls: {sorted(leaked)}")
    return allowed


def _arg(index: int, value: int, op: str = "SCMP_CMP_EQ", value_two: int = 0) -> dict[str, Any]:
    return {"index": index, "value": value, "valueTwo": value_two, "op": op}


@lru_cache(maxsize=1)
def profile() -> dict[str, Any]:
    """The profile as the engine's JSON format describes it."""
    rules: list[dict[str, Any]] = [{"names": allowed_syscalls(), "action": "SCMP_ACT_ALLOW"}]
    for family in SOCKET_FAMILIES.values():
        rules.append({"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [_arg(0, family)]})
    for persona in PERSONALITIES:
        rules.append({"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [_arg(0, persona)]})
    rules.append(
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [_arg(0, CLONE_NAMESPACE_FLAGS, "SCMP_CMP_MASKED_EQ", 0)],
        }
    )
    rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "architectures": list(_ARCH),
        "syscalls": rules,
    }


@lru_cache(maxsize=1)
def profile_json() -> str:
    """What goes into `--security-opt seccomp=...` (the engine API takes the JSON itself)."""
    return json.dumps(profile(), separators=(",", ":"), sort_keys=True)
