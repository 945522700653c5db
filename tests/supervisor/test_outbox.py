"""The outbox is the agent's folder: its files are hostile input (real files, no mocks)."""

import json
import os
import uuid
from datetime import UTC, datetime

import pytest

from supervisor.loop import outbox
from supervisor.store.protocol import MAX_MESSAGE_BYTES, ProtocolError


def proposal_bytes(**overrides) -> bytes:
    message = {
        "version": 1,
        "kind": "proposal",
        "id": uuid.uuid4().hex,
        "why": "because",
        "summary": "Make it better",
        "created_at": datetime.now(UTC).isoformat(),
    }
    return json.dumps({**message, **overrides}).encode()


def test_a_valid_proposal_stays_until_discarded(tmp_path):
    path = tmp_path / "proposal-1.json"
    path.write_bytes(proposal_bytes(summary="Add a tool"))
    assert outbox.pending(tmp_path) == [path]
    assert outbox.read(path).summary == "Add a tool"
    assert outbox.pending(tmp_path) == [path]  # a crash before the proposal is recorded loses nothing
    outbox.discard(path)
    assert not path.exists()


def test_unfinished_temp_files_are_not_pending(tmp_path):
    (tmp_path / ".proposal-1.tmp").write_bytes(proposal_bytes())
    assert outbox.pending(tmp_path) == []


def test_a_symlink_is_never_followed(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    link = tmp_path / "box" / "proposal-1.json"
    link.parent.mkdir()
    os.symlink(secret, link)
    with pytest.raises(ProtocolError, match="opened safely"):
        outbox.read(link)
    assert secret.read_text() == "host secret"


def test_oversized_and_malformed_messages_are_refused(tmp_path):
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (MAX_MESSAGE_BYTES + 10))
    with pytest.raises(ProtocolError, match="more than"):
        outbox.read(big)
    wrong = tmp_path / "wrong.json"
    wrong.write_bytes(proposal_bytes(version=2))
    with pytest.raises(ValueError):
        outbox.read(wrong)


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "proposal-2.json"
    os.mkfifo(fifo)
    with pytest.raises(ProtocolError, match="not a regular file"):
        outbox.read(fifo)


def test_a_folder_named_like_a_proposal_is_refused_and_removed(tmp_path):
    folder = tmp_path / "evil.json"
    (folder / "inside").mkdir(parents=True)
    assert outbox.pending(tmp_path) == [folder]
    with pytest.raises(ProtocolError, match="not a regular file"):
        outbox.read(folder)
    outbox.discard(folder)
    assert outbox.pending(tmp_path) == [] and not folder.exists()
