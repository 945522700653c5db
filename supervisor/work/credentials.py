"""The delivery token: read from the supervisor's environment or a private file, handed to git without a trace.

The token is never in ouroboros.toml, never in a URL, never on a command line (another user's
`ps` would show it) and never in a repository's config or a file. git gets it from a credential
helper given inline (`-c credential.helper=!…`, a shell function that prints two variables of git's
own environment), so no helper file is written or run: a `noexec` temporary folder cannot break it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from ipaddress import ip_address
from pathlib import Path
from urllib.parse import urlsplit

from supervisor.base.errors import ConfigError
from supervisor.base.secret_file import read_secret_file
from supervisor.store.instance import ContributeSettings

MAX_TOKEN_FILE = 64 * 1024
TOKEN_VAR = "OUROBOROS_DELIVERY_TOKEN"
USER_VAR = "OUROBOROS_DELIVERY_USER"
# git's credential protocol: asked to `get`, print the user and the token from git's environment.
CREDENTIAL_HELPER = (
    '!f() { test "$1" = get && printf "username=%s\\npassword=%s\\n" "$' + USER_VAR + '" "$' + TOKEN_VAR + '"; }; f'
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


def credential_setup(user: str, token: str | None) -> tuple[list[str], dict[str, str]]:
    """The `-c` settings and the environment entries that make git answer its credential prompts with
    `user`/`token`; none of either without a token. Only the environment holds the token."""
    if token is None:
        return [], {}
    return [f"credential.helper={CREDENTIAL_HELPER}"], {TOKEN_VAR: token, USER_VAR: user}
