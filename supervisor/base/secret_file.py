"""Read a secret (a token, a password) from a private file: regular, unreadable by group and others, small."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from supervisor.base.errors import ConfigError

MAX_SECRET_FILE = 64 * 1024


def read_secret_file(path: Path, setting: str) -> str:
    """The secret in `path`, stripped; `setting` names the option in messages (e.g. "[fleet] password_file")."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as exc:
        raise ConfigError(f"cannot read {setting} {path}: {exc.strerror}; fix the path or its permissions") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{setting} {path} is not a regular file; point it at the file holding the secret")
        if info.st_mode & 0o077:
            raise ConfigError(
                f"refusing {setting} {path}: group or others may access it (mode "
                f"{stat.S_IMODE(info.st_mode):04o}); run `chmod 600 {path}` (and check who else saw it)"
            )
        data = os.read(fd, MAX_SECRET_FILE + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_SECRET_FILE:
        raise ConfigError(f"{setting} {path} is larger than {MAX_SECRET_FILE} bytes; it should hold one secret")
    secret = data.decode("utf-8", errors="replace").strip("\r\n")
    if not secret or "\n" in secret or "\x00" in secret:
        raise ConfigError(f"{setting} {path} must hold the secret alone, on one line")
    return secret
