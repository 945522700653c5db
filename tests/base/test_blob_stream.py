"""Blobs streamed out of one git process (supervisor/base/blob_stream.py), and the export that uses it.

Real git repositories; the memory bound is measured with tracemalloc around a real export.
"""

from __future__ import annotations

import os
import subprocess
import time
import tracemalloc
from pathlib import Path

import pytest

from supervisor.base.blob_stream import BlobStream, BlobStreamError
from supervisor.base.git_ops import Git, GitError, safe_env


def _repo(tmp_path: Path) -> Git:
    repo = tmp_path / "r.git"
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True, env=safe_env())
    return Git(repo)


def _blob(g: Git, data: bytes) -> str:
    return g.out("hash-object", "-w", "--stdin", input=data)


def _stream(g: Git, shas: list[str], timeout_s: float = 60) -> BlobStream:
    return BlobStream(g.command("cat-file", "--batch"), cwd=g.git_dir, env=safe_env(), shas=shas, timeout_s=timeout_s)


def _copied(stream: BlobStream, sha: str, folder: Path) -> bytes:
    path = folder / sha
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        stream.copy(sha, fd)
    finally:
        os.close(fd)
    return path.read_bytes()


def test_blobs_come_out_in_order_whole_and_repeated_ids_are_fine(tmp_path: Path) -> None:
    g = _repo(tmp_path)
    contents = [b"", b"one\n", b"\n\nblob 3\n", bytes(range(256)) * 9000]  # the last spans chunks
    shas = [_blob(g, c) for c in contents]
    with _stream(g, [*shas, shas[1]]) as stream:
        got = [_copied(stream, sha, tmp_path) for sha in shas]
        os.unlink(tmp_path / shas[1])
        got.append(_copied(stream, shas[1], tmp_path))
    assert got == [*contents, contents[1]]


def test_a_missing_object_or_a_stream_out_of_step_is_an_error(tmp_path: Path) -> None:
    g = _repo(tmp_path)
    real = _blob(g, b"here\n")
    with _stream(g, ["f" * 40, real]) as stream:
        with pytest.raises(BlobStreamError, match="missing"):
            _copied(stream, "f" * 40, tmp_path)
        with pytest.raises(BlobStreamError):
            _copied(stream, "e" * 40, tmp_path)  # git answers for `real`, not for this one


def test_a_git_that_hangs_is_killed_at_the_deadline(tmp_path: Path) -> None:
    started = time.monotonic()
    with BlobStream(["sleep", "30"], cwd=tmp_path, env=safe_env(), shas=["a" * 40], timeout_s=0.5) as stream:
        with pytest.raises(BlobStreamError, match="stopped answering"):
            _copied(stream, "a" * 40, tmp_path)
    assert time.monotonic() - started < 10


def test_an_export_holds_one_chunk_in_memory_not_the_checkout(tmp_path: Path) -> None:
    g = _repo(tmp_path)
    big = os.urandom(1 << 20) * 24  # 24 MiB: stored once, compressed well
    script = _blob(g, b"#!/bin/sh\n")
    entries = [f"100644 blob {_blob(g, big)}\tbig.bin", f"100755 blob {script}\trun.sh"]
    tree = g.out("mktree", input=("\n".join(entries) + "\n").encode())
    dest = tmp_path / "out"
    dest.mkdir()
    tracemalloc.start()
    try:
        assert g.export_tree(tree, dest) == 2
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The mode bits, not os.access: a noexec /tmp (the gate's container) would deny X_OK whatever the mode.
    assert (dest / "big.bin").read_bytes() == big and (dest / "run.sh").stat().st_mode & 0o111
    assert peak < 8 << 20, f"the export held {peak >> 20} MiB at once"


def test_an_export_whose_git_dies_midway_is_a_git_error(tmp_path: Path, monkeypatch) -> None:
    g = _repo(tmp_path)
    entries = [f"100644 blob {_blob(g, f'file {n}'.encode())}\tf{n}" for n in range(5)]
    tree = g.out("mktree", input=("\n".join(entries) + "\n").encode())
    real = BlobStream.__init__

    def short(self: BlobStream, command: list[str], **kwargs) -> None:  # type: ignore[no-untyped-def]
        kwargs["shas"] = kwargs["shas"][:2]  # git answers for two, then ends
        real(self, command, **kwargs)

    monkeypatch.setattr(BlobStream, "__init__", short)
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(GitError, match="could not export"):
        g.export_tree(tree, dest)
