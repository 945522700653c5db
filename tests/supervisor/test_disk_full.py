"""A full disk is decided by the error number and the filesystem, never by text the candidate chose."""

from __future__ import annotations

import errno

from supervisor.base.appendfile import DiskFullError, is_disk_full
from supervisor.base.git_ops import GitError


def test_message_text_naming_a_full_disk_is_not_a_full_disk():
    # A link target or file name the candidate chose ends up quoted in git's error message.
    forged = GitError("git checkout-index failed: tests/../../../No space left on device: Disk quota exceeded")
    assert not is_disk_full(forged)
    assert not is_disk_full(OSError(errno.ENOENT, "No space left on device"))


def test_the_error_number_is():
    assert is_disk_full(OSError(errno.ENOSPC, "whatever the message says"))
    assert is_disk_full(OSError(errno.EDQUOT, ""))
    assert is_disk_full(DiskFullError(errno.ENOSPC, "no space"))
