"""The delivery token: read from the supervisor's environment or a private file, handed to git without a trace.

The token is never in ouroboros.toml, never in a URL, never on a command line (another user's
`ps` would show it) and never in a repository's config. git gets it from a GIT_ASKPASS helper in a
private 0700 folder that reads it from git's own environment, and the folder is removed after.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from ipaddress import ip_address
from pathlib import Path
from urllib.parse import urlsplit

from supervisor.base.errors import ConfigError
from supervisor.base.secret_file import read_secret_file
from supervisor.store.instance import ContributeSettings

MAX_TOKEN_FILE = 64 * 1024
TOKEN_VAR = "OUROBOROS_DELIVERY_TOKEN"
USER_VAR = "OUROBOROS_DELIVERY_USER"
ASKPASS = (
    "#!/bin/sh\n"
    "# Written by the Ouroboros supervisor for one push; the token is only in git's environment.\n"
    'case "$1" in\n'
    '  Username*) printf "%s\\n" "$' + USER_VAR + '" ;;\n'
    '  *) printf "%s\\n" "$' + TOKEN_VAR + '" ;;\n'
    "esac\n"
)


def resolve_token(settings: ContributeSettings, environ: Mapping[str, str] | None = None) -> str | None:
    """The token from `token_env` in the environment, else from `token_file`; None when neither is set."""
    env = os.environ if environ is None else environ
    if settings.token_env:
        value = env.get(settings.token_env, "").strip()
        if value:
            return value
    if settings.token_file is not None:
        return read_token_file(settings.token_file)
    if settings.token_env:
        raise ConfigError(
            f"[contribute] token_env names {settings.token_env}, which is not set in the supervisor's environment; "
            "export it (or set token_file)"
        )
    return None


def read_token_file(path: Path) -> str:
    """The token in `path`: a regular file that neither group nor others may read, at most 64 KiB."""
    token = read_secret_file(path, "[contribute] token_file")
    if any(char.isspace() for char in token):
        raise ConfigError(f"[contribute] token_file {path} must hold the token alone, on one line")
    return token


def may_carry_token(url: str) -> bool:
    """https anywhere; plain http only to this machine (loopback), where nothing on the way can read it."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    if parts.scheme != "http" or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


@contextmanager
def askpass_env(user: str, token: str | None) -> Iterator[dict[str, str]]:
    """Environment entries that make git answer its credential prompts with `user`/`token` (none: no token)."""
    if token is None:
        yield {}
        return
    folder = Path(tempfile.mkdtemp(prefix="ouroboros-askpass-"))  # 0700, ours alone
    try:
        script = folder / "askpass"
        fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o700)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(ASKPASS)
        yield {"GIT_ASKPASS": str(script), TOKEN_VAR: token, USER_VAR: user}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
