import json
import uuid
from datetime import datetime

import pytest
from pydantic import ValidationError

from agent.proposal import Proposal, pending_proposals, summary_from_why, write_proposal


def test_proposal_is_message_v1_exactly(tmp_path):
    proposal, path = write_proposal(tmp_path / "outbox", "Add a tool.\n\nIt saves steps.")
    data = json.loads(path.read_text())
    assert set(data) == {"version", "kind", "id", "why", "summary", "created_at"}
    assert (data["version"], data["kind"], data["summary"]) == (1, "proposal", "Add a tool.")
    assert uuid.UUID(hex=data["id"]).hex == data["id"]
    assert datetime.fromisoformat(data["created_at"]).utcoffset().total_seconds() == 0
    assert [p.id for p in pending_proposals(tmp_path / "outbox")] == [proposal.id]


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    write_proposal(tmp_path, "one")
    write_proposal(tmp_path, "two")
    assert sorted(p.name.startswith("proposal-") for p in tmp_path.iterdir()) == [True, True]


def test_unknown_fields_are_rejected():
    with pytest.raises(ValidationError):
        Proposal.model_validate({"version": 1, "kind": "proposal", "why": "w", "summary": "s", "files": ["x"]})
    with pytest.raises(ValidationError):
        Proposal(why="")


def test_summary_defaults_to_a_short_first_line():
    assert summary_from_why("x" * 100).endswith("...") and len(summary_from_why("x" * 100)) == 72


def test_summary_must_be_one_line_and_why_bounded():
    with pytest.raises(ValidationError):
        Proposal(why="w", summary="two\nlines")
    with pytest.raises(ValidationError):
        Proposal(why="x" * 20_001, summary="s")
