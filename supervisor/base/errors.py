"""One error hierarchy for the trusted side; the CLI is the only place that turns these into exit codes."""

from __future__ import annotations

import getpass
import grp
import os
import pwd
from pathlib import Path

# Exit codes of every `supervisor` command (docs/operations.md, "Exit codes").
EXIT_OK = 0
EXIT_FAILED = 1  # a rejected proposal, a broken decision log, any error a person must fix
EXIT_USAGE = 2  # a wrong option or argument (click's own code)
EXIT_INFRASTRUCTURE = 3  # no Docker engine, no permission, an image that cannot be built: nothing was judged
EXIT_NOT_RUNNING = 3  # `supervisor status`: no supervisor runs (as `systemctl is-active`)
EXIT_GAVE_UP = 4  # `supervisor start` gave up after too many rollbacks: restarting will not help

from sandbox.errors import OuroborosError  # noqa: E402  (the root lives in sandbox, which imports nothing of ours)

__all__ = ["AccessError", "ConfigError", "OuroborosError", "describe_permission_error"]


class ConfigError(OuroborosError, ValueError):
    """A configuration file or option is missing or invalid."""


class AccessError(OuroborosError, PermissionError):
    """The operating system refused access to a file; the message says whose it is and what to run."""

    @classmethod
    def from_os_error(cls, exc: PermissionError) -> AccessError:
        return cls(describe_permission_error(exc))


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return f"gid {gid}"


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.geteuid()}"


def _nearest_existing(path: Path) -> Path | None:
    for candidate in (path, *path.parents):
        try:
            candidate.lstat()
            return candidate
        except OSError:
            continue
    return None


def describe_permission_error(exc: PermissionError) -> str:
    """`permission denied` made actionable: the file, its owner and mode, who we are, what to run."""
    me = _current_user()
    if not exc.filename:
        return f"permission denied ({exc.strerror or exc}) while running as {me}; run as the instance's owner"
    path = Path(os.fsdecode(exc.filename))
    found = _nearest_existing(path)
    if found is None:
        return f"permission denied on {path} while running as {me}"
    info = found.lstat()
    owner = _user_name(info.st_uid)
    where = path if found == path else f"{path} (under {found})"
    advice = (
        f"run the command as {owner} (e.g. `sudo -u {owner} supervisor ...`)"
        if info.st_uid != os.geteuid()
        else f"give {me} write access again (e.g. `chmod u+rwX {found}`)"
    )
    return (
        f"permission denied on {where}: owned by {owner}:{_group_name(info.st_gid)}, mode "
        f"{info.st_mode & 0o7777:04o}, and this command runs as {me}; {advice}, or make the instance "
        f"yours with `sudo chown -R {me} <instance directory>`"
    )
