"""Where the token comes from: the supervisor's environment or a file only its user can read."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from supervisor.base.errors import ConfigError
from supervisor.store.instance import ContributeSettings, InstanceConfig
from supervisor.work.credentials import (
    TOKEN_VAR,
    USER_VAR,
    credential_setup,
    may_carry_token,
    read_token_file,
    resolve_token,
)


def _token_file(tmp_path: Path, mode: int, text: str = "tok-123\n") -> Path:
    path = tmp_path / "token"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_private_token_file_is_read(tmp_path: Path) -> None:
    assert read_token_file(_token_file(tmp_path, 0o600)) == "tok-123"
    assert read_token_file(_token_file(tmp_path, 0o400)) == "tok-123"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_token_file_others_may_read_is_refused(tmp_path: Path, mode: int) -> None:
    path = _token_file(tmp_path, mode)
    with pytest.raises(ConfigError, match=f"group or others may access it \\(mode {mode:04o}\\).*chmod 600"):
        resolve_token(ContributeSettings(token_file=path), environ={})


def test_a_token_file_that_is_not_a_file_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    outcome: list[BaseException] = []
    reader = threading.Thread(target=lambda: _catch(outcome, fifo), daemon=True)
    reader.start()
    reader.join(5)
    assert not reader.is_alive() and "not a regular file" in str(outcome[0])
    with pytest.raises(ConfigError, match="not a regular file"):
        read_token_file(tmp_path)


def _catch(outcome: list[BaseException], path: Path) -> None:
    try:
        read_token_file(path)
    except ConfigError as exc:
        outcome.append(exc)


@pytest.mark.parametrize("text", ["", "  \n", "two words\n", "a\nb\n"])
def test_a_token_file_must_hold_one_token(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="must hold the (token|secret) alone"):
        read_token_file(_token_file(tmp_path, 0o600, text))


def test_a_huge_or_missing_token_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="larger than"):
        read_token_file(_token_file(tmp_path, 0o600, "x" * 100_000))
    with pytest.raises(ConfigError, match="cannot read .*token_file"):
        read_token_file(tmp_path / "missing")


def test_the_environment_comes_first_then_the_file(tmp_path: Path) -> None:
    both = ContributeSettings(token_env="GH_TOKEN", token_file=_token_file(tmp_path, 0o600))
    assert resolve_token(both, environ={"GH_TOKEN": " from-env \n"}) == "from-env"
    assert resolve_token(both, environ={}) == "tok-123"
    assert resolve_token(ContributeSettings(), environ={"GH_TOKEN": "x"}) is None
    with pytest.raises(ConfigError, match="GH_TOKEN, which is not set"):
        resolve_token(ContributeSettings(token_env="GH_TOKEN"), environ={})


def test_the_config_never_holds_a_credential_in_the_remote(tmp_path: Path) -> None:
    config = tmp_path / "ouroboros.toml"
    config.write_text('[contribute]\nauto = "passed"\nremote = "https://x:ghp_abc@github.com/o/r.git"\n')
    with pytest.raises(ConfigError, match="without a user or password"):
        InstanceConfig.load(config)
    config.write_text('[contribute]\nauto = "passed"\nremote = "https://github.com/o/r.git"\ntoken = "ghp_abc"\n')
    with pytest.raises(ConfigError, match="token"):
        InstanceConfig.load(config)
    config.write_text('[contribute]\nauto = "passed"\nremote = "https://github.com/o/r.git"\ngithub_repo = "o/r"\n')
    loaded = InstanceConfig.load(config).contribute
    assert loaded.auto == "passed" and loaded.github_repo == "o/r" and loaded.base_branch is None
    assert InstanceConfig().contribute.auto == "never" and InstanceConfig().contribute.remote is None


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://github.com/o/r", True),
        ("http://127.0.0.1:8080/x", True),
        ("http://localhost/x", True),
        ("http://[::1]:9/x", True),
        ("http://example.test/x", False),
        ("http://10.0.0.1/x", False),
        ("file:///tmp/x", False),
    ],
)
def test_which_addresses_may_carry_the_token(url: str, ok: bool) -> None:
    assert may_carry_token(url) is ok


def test_the_token_is_only_in_the_environment_and_the_helper_is_inline() -> None:
    config, env = credential_setup("bot", "Zq7-unique-token")
    assert env == {TOKEN_VAR: "Zq7-unique-token", USER_VAR: "bot"}
    assert all("Zq7-unique-token" not in item for item in config)  # the command line names variables only
    assert config and config[0].startswith("credential.helper=!")  # no file to write or run (noexec /tmp)
    assert credential_setup("bot", None) == ([], {})
