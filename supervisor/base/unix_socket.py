"""Binding a Unix socket at a path of any length.

A socket address holds at most 107 bytes of path (sun_path is 108 with its NUL), and an instance's
home or a gate's scratch folder can be deeper than that. Rather than a short folder elsewhere (which
a kill leaves behind), the socket is bound where it belongs, through the folder's file descriptor:
`/proc/self/fd/<n>/<name>` names the same place in a few bytes. Containers mount the folder, so
they never see either name.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MAX_PATH_BYTES = 107


@contextmanager
def bind_address(path: Path) -> Iterator[str]:
    """An address to bind `path` by: the path itself when short enough, else an alias through an open
    descriptor of its folder (valid only inside the block: bind within it)."""
    if len(os.fsencode(path)) <= MAX_PATH_BYTES:
        yield str(path)
        return
    folder = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        alias = f"/proc/self/fd/{folder}/{path.name}"
        if len(os.fsencode(alias)) > MAX_PATH_BYTES:
            raise OSError(36, f"socket name {path.name!r} is too long to bind")
        yield alias
    finally:
        os.close(folder)
