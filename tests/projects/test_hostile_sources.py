"""A project's source is hostile: its config, hooks, attributes and server get nothing run, nothing asked."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from supervisor.base.git_ops import Git
from supervisor.store.projects import ProjectError
from supervisor.work.git_fetch import Source, classify_source, fetch_env, redact, run_fetch
from supervisor.work.mirror import check_commit, create_mirror, fetch, resolve_commit
from tests.gate.repo_factory import GIT_ENV, git
from tests.projects.sources import (
    config,
    leftovers,
    make_source,
    password_server,
    registry,
    silent_server,
)

HOOKS = ("post-checkout", "pre-commit", "reference-transaction", "post-update", "pre-upload-pack", "post-merge")


def _trap(marker: Path) -> str:
    return f"touch {marker}"


def _armed_source(tmp_path: Path, marker: Path) -> Path:
    """A repository whose config, include, hooks and attributes each try to run a program."""
    source = make_source(
        tmp_path / "src",
        {
            "data.txt": "raw content\n",
            "pointer.bin": "version https://git-lfs.github.com/spec/v1\noid sha256:" + "a" * 64 + "\nsize 12\n",
            ".gitattributes": "*.txt filter=evil diff=evil merge=evil\n*.bin filter=lfs diff=lfs merge=lfs -text\n",
        },
    )
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    for name in HOOKS:
        for folder in (hooks, source / ".git" / "hooks"):
            path = folder / name
            path.write_text(f"#!/bin/sh\n{_trap(marker)}\n")
            path.chmod(path.stat().st_mode | stat.S_IXUSR)
    included = tmp_path / "included.cfg"
    included.write_text(f'[core]\n\tfsmonitor = "{_trap(marker)}"\n\tsshCommand = "{_trap(marker)}"\n')
    settings = {
        "core.hooksPath": str(hooks),
        "include.path": str(included),
        "filter.evil.smudge": _trap(marker),
        "filter.evil.clean": _trap(marker),
        "filter.evil.process": _trap(marker),
        "filter.evil.required": "true",
        "filter.lfs.smudge": _trap(marker),
        "filter.lfs.process": _trap(marker),
        "diff.evil.textconv": _trap(marker),
        "merge.evil.driver": _trap(marker),
        "uploadpack.packObjectsHook": _trap(marker),
        "core.alternateRefsCommand": _trap(marker),
        "remote.origin.uploadpack": _trap(marker),
        "remote.origin.url": str(tmp_path / "elsewhere"),
    }
    for key, value in settings.items():
        git(source, "config", key, value)
    return source


def test_the_trap_is_armed_for_plain_git(tmp_path: Path) -> None:
    """The same source does run programs under an ordinary `git checkout` (so the next test can fail)."""
    marker = tmp_path / "marker"
    source = _armed_source(tmp_path, marker)
    (source / "data.txt").unlink()
    subprocess.run(["git", "checkout", "--", "data.txt"], cwd=source, env=GIT_ENV, capture_output=True, check=False)
    assert marker.exists()


def test_add_fetch_and_checks_run_nothing_from_the_source(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    source = _armed_source(tmp_path, marker)
    projects = registry(tmp_path)
    report = create_mirror(projects, config("demo", source))
    safe = ("-c", "core.hooksPath=/dev/null")  # plumbing: the source's own side runs nothing either
    second = git(source, *safe, "commit-tree", "HEAD^{tree}", "-p", "HEAD", "-m", "second")
    git(source, *safe, "update-ref", "refs/heads/main", second)
    git(source, *safe, "tag", "v2")
    fetch(projects, "demo")
    mirror = projects.mirror("demo")
    head = resolve_commit(mirror, "main")
    assert head == second
    check_commit(mirror, head, projects.get("demo"))
    assert not marker.exists()
    mirror_git = Git(mirror)
    assert mirror_git.dangerous_config() == []
    assert "uploadpack" not in (mirror / "config").read_text() and "remote" not in (mirror / "config").read_text()
    assert not (mirror / "hooks").exists()
    pointer = mirror_git.read_blob(head, "pointer.bin")
    assert pointer is not None and pointer.startswith(b"version https://git-lfs.github.com/spec/v1\n")
    assert any("Git LFS" in note and "pointer files" in note for note in report.notes)


@pytest.mark.parametrize(
    "source",
    ["ext::sh -c touch% /tmp/x", "fd::3", "ftp://example.invalid/x.git", "-uhack", "--upload-pack=touch x", "a\nb"],
)
def test_sources_that_would_run_a_program_or_an_option_are_refused(source: str) -> None:
    with pytest.raises(ProjectError):
        classify_source(source)


def test_only_the_sources_own_transport_is_allowed_even_if_classification_were_fooled(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    mirror = tmp_path / "m.git"
    git(tmp_path, "init", "-q", "--bare", str(mirror))
    with pytest.raises(ProjectError, match="failed"):
        run_fetch(mirror, Source("file", f"ext::sh -c touch% {marker}"), max_mb=10)
    assert not marker.exists()
    assert fetch_env(Source("https", "https://h/x"))["GIT_ALLOW_PROTOCOL"] == "https"
    ssh = fetch_env(Source("ssh", "git@host:x.git"))
    assert ssh["GIT_ALLOW_PROTOCOL"] == "ssh" and "BatchMode=yes" in ssh["GIT_SSH_COMMAND"]
    assert ssh["GIT_TERMINAL_PROMPT"] == "0" and ssh["GIT_CONFIG_GLOBAL"] == "/dev/null"


def test_classification_follows_gits_rules_and_urls_hide_their_secrets(tmp_path: Path) -> None:
    assert classify_source("https://h.example/x.git") == Source("https", "https://h.example/x.git")
    assert classify_source("git@h.example:x.git").scheme == "ssh"
    assert classify_source("ssh://git@h.example/x.git").scheme == "ssh"
    assert classify_source(str(tmp_path)) == Source("file", str(tmp_path.resolve()))
    assert redact("https://user:tok3n@h.example/x.git") == "https://***@h.example/x.git"
    assert classify_source("https://user:tok3n@h.example/x.git").shown == "https://***@h.example/x.git"


def test_an_unreachable_url_fails_fast_names_the_url_and_leaves_nothing(tmp_path: Path) -> None:
    projects = registry(tmp_path)
    started = time.monotonic()
    with pytest.raises(ProjectError) as caught:
        create_mirror(projects, config("web", "http://127.0.0.1:9/repo.git"))
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert "http://127.0.0.1:9/repo.git" in message and "check the URL, the network" in message
    assert leftovers(projects) == []


def test_a_server_that_never_answers_is_stopped_at_the_deadline(tmp_path: Path) -> None:
    projects = registry(tmp_path)
    with silent_server() as url:
        started = time.monotonic()
        with pytest.raises(ProjectError, match=r"took longer than 1.5 s and was stopped; check that the server"):
            create_mirror(projects, config("web", url), timeout_s=1.5)
        assert time.monotonic() - started < 10
    assert leftovers(projects) == []


def test_a_url_that_asks_for_a_password_fails_at_once_with_a_clear_error(tmp_path: Path) -> None:
    projects = registry(tmp_path)
    with password_server() as url:
        started = time.monotonic()
        with pytest.raises(ProjectError, match="asks for credentials and the supervisor gives none"):
            create_mirror(projects, config("private", url.replace("http://", "http://someone@")))
        assert time.monotonic() - started < 10
    assert leftovers(projects) == []


def test_a_local_source_is_fetched_not_copied(tmp_path: Path) -> None:
    """Its config, hooks, info and unreachable objects do not come along: only refs and their objects."""
    source = make_source(tmp_path / "src")
    git(source, "config", "user.secret", "s3cret")
    (source / ".git" / "info" / "attributes").write_text("* filter=evil\n")
    blob = os.urandom(64).hex()
    (source / "stray.txt").write_text(blob)
    stray = git(source, "hash-object", "-w", "stray.txt")  # in the object store, reachable from no ref
    (source / "stray.txt").unlink()
    projects = registry(tmp_path)
    create_mirror(projects, config("demo", source))
    mirror = projects.mirror("demo")
    assert "s3cret" not in (mirror / "config").read_text()
    assert not (mirror / "info" / "attributes").exists()
    assert Git(mirror).run("cat-file", "-e", stray, check=False).returncode != 0


def test_malformed_objects_are_refused(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src")
    tree = git(source, "rev-parse", "HEAD^{tree}")
    bad = f"tree {tree}\nauthor no email here 0 +0000\ncommitter x <x@x> 0 +0000\n\nbroken\n"
    done = subprocess.run(
        ["git", "hash-object", "-t", "commit", "--literally", "-w", "--stdin"],
        cwd=source,
        env=GIT_ENV,
        input=bad,
        capture_output=True,
        text=True,
        check=True,
    )
    git(source, "update-ref", "refs/heads/main", done.stdout.strip())
    projects = registry(tmp_path)
    with pytest.raises(ProjectError, match="fsck|malformed"):
        create_mirror(projects, config("demo", source))
    assert leftovers(projects) == []
