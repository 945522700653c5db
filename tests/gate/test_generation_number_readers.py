"""Every reader of a generation number given hostile spellings: `rollback --to` (CLI and API), the
gen/N tags, candidate ids in the stores. A clean error or "not a generation", never a traceback, and
never a number read from '²', '٣', '0010', a sign or twenty digits."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from supervisor.base.git_ops import GEN_TAG_PREFIX, MAIN_REF, ZERO, Git
from supervisor.cli import OuroborosGroup
from supervisor.cli.gate_cmds import COMMANDS
from supervisor.gate.gatekeeper import Gatekeeper
from supervisor.gate.rollback import RollbackError
from supervisor.store.candidates import CandidateError, CandidateStore
from supervisor.store.record_archive import Archive, ArchiveError, split_id

HOSTILE = ["\u00b2", "\u0663", "0010", "-1", "+1", " 1", "9" * 20, ""]


@click.group(cls=OuroborosGroup)
def cli() -> None:
    """The gate commands, grouped as the real `supervisor` group does."""


for _command in COMMANDS:
    cli.add_command(_command)


def _commit(g: Git, parent: str, text: str) -> str:
    blob = g.out("hash-object", "-w", "--stdin", input=text.encode())
    tree = g.out("mktree", input=f"100644 blob {blob}\tfile.txt\n".encode())
    return g.commit_tree(tree, [parent], text)


@pytest.fixture
def two_generations(offline_gatekeeper: Gatekeeper) -> Gatekeeper:
    """Generation 0 at the first main, generation 1 on top of it, main at 1."""
    g = offline_gatekeeper.git
    first = g.ref_value(MAIN_REF)
    assert first is not None
    second = _commit(g, first, "generation one")
    g.update_ref(f"{GEN_TAG_PREFIX}0", first, ZERO)
    g.update_ref(f"{GEN_TAG_PREFIX}1", second, ZERO)
    g.update_ref(MAIN_REF, second, first)
    return offline_gatekeeper


@pytest.mark.parametrize("to", [*HOSTILE, *(f"gen/{t}" for t in HOSTILE), "gen/x"])
def test_rollback_to_a_number_not_written_as_one_is_a_usage_error(two_generations: Gatekeeper, to: str) -> None:
    main = two_generations.main()
    repo = str(two_generations.common)
    result = CliRunner().invoke(cli, ["rollback", "--to", to, "--repo", repo])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "not a generation number" in result.output and "git tag -l" in result.output
    as_json = CliRunner().invoke(cli, ["rollback", "--to", to, "--repo", repo, "--json"])
    assert as_json.exit_code == 2
    assert json.loads(as_json.output)["error"]["kind"] == "usage"
    with pytest.raises(RollbackError, match="not a generation number"):
        two_generations.rollback(to)
    assert two_generations.main() == main  # nothing moved


def test_rollback_to_a_number_as_written_and_to_a_commit_still_work(two_generations: Gatekeeper) -> None:
    repo = str(two_generations.common)
    zero = two_generations.generations()[0]
    result = CliRunner().invoke(cli, ["rollback", "--to", "0", "--repo", repo, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["generation"] == 0 and two_generations.main() == zero
    one = two_generations.generations()[1]
    assert CliRunner().invoke(cli, ["rollback", "--to", one[:12], "--repo", repo]).exit_code == 0
    assert two_generations.main() == one
    missing = CliRunner().invoke(cli, ["rollback", "--to", "7", "--repo", repo])
    assert missing.exit_code == 1 and "neither a generation number nor a commit" in missing.output


@pytest.mark.parametrize("name", ["\u00b2", "\u0663", "0010", "-1", "+1", "9" * 20, "1" * 10])
def test_a_tag_of_another_spelling_is_no_generation_to_any_reader(offline_gatekeeper: Gatekeeper, name: str) -> None:
    g = offline_gatekeeper.git
    main = g.ref_value(MAIN_REF)
    assert main is not None
    seven = _commit(g, main, "seven")
    g.update_ref(f"{GEN_TAG_PREFIX}7", seven, ZERO)
    odd = _commit(g, main, "tagged by hand")
    g.update_ref(f"{GEN_TAG_PREFIX}{name}", odd, ZERO)
    assert offline_gatekeeper.generations() == {7: seven}
    assert offline_gatekeeper.latest_generation() == (7, seven)
    assert offline_gatekeeper.generation_of(odd) is None


@pytest.mark.parametrize("stem", ["\u00b2-1", "\u0663-1", "0010-1", "3-01", "9" * 20 + "-1", "-1-1", "+3-1"])
def test_a_stray_record_file_is_not_a_candidate(tmp_path: Path, stem: str) -> None:
    store = CandidateStore(tmp_path / "candidates")
    (store.folder / f"{stem}.json").write_text("{}")
    (store.done / f"{stem}.json").write_text("{}")
    records, total = store.newest(10)
    assert records == [] and total == 0
    with pytest.raises(CandidateError, match="not a candidate id"):
        store.load(stem)
    assert store.next_n(3) == 1


@pytest.mark.parametrize("name", ["\u00b2-0.jsonl", "\u0663-0.jsonl", "00-0.jsonl", "9" * 20 + "-0.jsonl"])
def test_a_stray_archive_block_is_not_read(tmp_path: Path, name: str) -> None:
    archive = Archive(tmp_path / "archive")
    (archive.folder / name).write_text('{"id":"3-1","x":1}\n')
    assert archive.high_water() == {}
    assert list(archive.lines()) == []
    with pytest.raises(ArchiveError, match="not a generation number"):
        split_id(name.removesuffix(".jsonl"))
