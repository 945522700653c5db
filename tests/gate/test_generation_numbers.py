"""Generation numbers: the next one is past the highest ever given, whatever main holds now.

Tagging asks git for the highest tag only (a listing of every generation grew with the lineage),
so these pin what that shortcut must still get right: numbers compared as numbers, a rollback
not reusing a number, the newest generation not tagged twice, a tag of another shape not breaking the count."""

from __future__ import annotations

from pathlib import Path

from supervisor.base.git_ops import GEN_TAG_PREFIX, MAIN_REF, ZERO, Git
from supervisor.gate import merge
from supervisor.gate.gatekeeper import Gatekeeper


def _commit(g: Git, parent: str, text: str) -> str:
    blob = g.out("hash-object", "-w", "--stdin", input=text.encode())
    tree = g.out("mktree", input=f"100644 blob {blob}\tfile.txt\n".encode())
    return g.commit_tree(tree, [parent], text)


def _tag(g: Git, number: int | str, commit: str) -> None:
    g.update_ref(f"{GEN_TAG_PREFIX}{number}", commit, ZERO)


def test_numbers_compare_as_numbers_and_a_tagged_commit_keeps_its_number(offline_gatekeeper: Gatekeeper) -> None:
    g = offline_gatekeeper.git
    main = g.ref_value(MAIN_REF)
    assert offline_gatekeeper.latest_generation() == (0, None)
    commits = {n: _commit(g, main, f"gen {n}") for n in (1, 2, 9, 10)}
    for n, commit in commits.items():
        _tag(g, n, commit)
    assert offline_gatekeeper.latest_generation() == (
        10,
        commits[10],
    )  # not 9, as a sort of the names as text would say
    assert (
        merge.tag(offline_gatekeeper.main_line, commits[10]) == 10
    )  # the newest already (a kill after tagging): no second tag
    assert merge.tag(offline_gatekeeper.main_line, _commit(g, main, "next")) == 11
    assert sorted(offline_gatekeeper.generations()) == [1, 2, 9, 10, 11]


def test_after_a_rollback_the_next_number_is_past_the_highest(offline_gatekeeper: Gatekeeper) -> None:
    g = offline_gatekeeper.git
    main = g.ref_value(MAIN_REF)
    first, second, third = (_commit(g, main, f"gen {n}") for n in (1, 2, 3))
    for n, commit in ((1, first), (2, second), (3, third)):
        _tag(g, n, commit)
    g.update_ref(MAIN_REF, first, main)  # main rolled back to generation 1
    assert offline_gatekeeper.generation_of(offline_gatekeeper.main()) == 1
    assert merge.tag(offline_gatekeeper.main_line, _commit(g, first, "after the rollback")) == 4


def test_a_tag_of_another_shape_does_not_break_the_count(offline_gatekeeper: Gatekeeper, tmp_path: Path) -> None:
    g = offline_gatekeeper.git
    main = g.ref_value(MAIN_REF)
    _tag(g, 7, _commit(g, main, "seven"))
    _tag(g, "zz-operator-note", main)  # sorts above every number
    assert offline_gatekeeper.latest_generation()[0] == 7
    assert merge.tag(offline_gatekeeper.main_line, _commit(g, main, "eight")) == 8


def test_the_remembered_answer_is_checked_not_trusted(offline_gatekeeper: Gatekeeper) -> None:
    """generation_of remembers its last answer; a tag deleted or moved since (by an operator) is seen."""
    g = offline_gatekeeper.git
    main = g.ref_value(MAIN_REF)
    first, second = _commit(g, main, "one"), _commit(g, main, "two")
    _tag(g, 1, first)
    assert offline_gatekeeper.generation_of(first) == 1
    g.run("update-ref", "-d", f"{GEN_TAG_PREFIX}1")
    assert offline_gatekeeper.generation_of(first) is None
    _tag(g, 1, second)
    assert offline_gatekeeper.generation_of(second) == 1
    g.run("update-ref", f"{GEN_TAG_PREFIX}1", first)  # the tag moved to another commit
    assert offline_gatekeeper.generation_of(second) is None
    assert offline_gatekeeper.generation_of(first) == 1
    assert offline_gatekeeper.generation_of(first[:12]) == 1  # a short id is resolved first
    assert offline_gatekeeper.generation_of("no-such-revision") is None


def test_the_highest_of_several_tags_is_the_generation(offline_gatekeeper: Gatekeeper) -> None:
    g = offline_gatekeeper.git
    main = g.ref_value(MAIN_REF)
    commit = _commit(g, main, "twice tagged")
    for number in (3, 12):
        _tag(g, number, commit)
    _tag(g, 5, _commit(g, main, "another"))
    assert offline_gatekeeper.generation_of(commit) == 12


def _merging_record(gatekeeper: Gatekeeper, commit: str, base: str):
    from supervisor.gate.passes import GateResult
    from supervisor.store.candidates import CandidateRecord, now
    from supervisor.store.states import CandidateState

    stamp = now()
    return CandidateRecord(
        id="1-1",
        gen=1,
        n=1,
        base=base,
        worktree=str(gatekeeper.worktrees / "1-1"),
        state=CandidateState.MERGING,
        created_at=stamp,
        updated_at=stamp,
        commit=commit,
        gate=GateResult(commit=commit, base=base, passed=True),
    )


def test_a_merge_finished_after_a_later_generation_keeps_its_number(offline_gatekeeper: Gatekeeper) -> None:
    """`supervisor approve` killed after tagging (before its record said accepted): the running supervisor
    went on to a newer generation on top; the next start finishes the old merge without a second number."""
    g = offline_gatekeeper.git
    genesis = g.ref_value(MAIN_REF)
    _tag(g, 0, genesis)
    approved = _commit(g, genesis, "approved")
    g.update_ref(MAIN_REF, approved, genesis)
    assert merge.tag(offline_gatekeeper.main_line, approved) == 1  # ... and the approving process was killed here
    later = _commit(g, approved, "the agent's next generation")
    g.update_ref(MAIN_REF, later, approved)
    assert merge.tag(offline_gatekeeper.main_line, later) == 2
    restarted = Gatekeeper(offline_gatekeeper.common, engine=offline_gatekeeper.gate_runner.engine, image="never-used")
    record = _merging_record(restarted, approved, genesis)
    restarted.store.save(record)
    assert restarted.resume(record).state == "accepted"  # the merge step, applied by the gatekeeper
    assert record.generation == 1
    assert sorted(restarted.generations()) == [0, 1, 2]


def test_the_remembered_answer_is_the_highest_tag(offline_gatekeeper: Gatekeeper) -> None:
    """A commit tagged again (by hand) reports its highest number, as a fresh gatekeeper would."""
    g = offline_gatekeeper.git
    main = g.ref_value(MAIN_REF)
    commit = _commit(g, main, "tagged twice")
    _tag(g, 3, commit)
    assert offline_gatekeeper.generation_of(commit) == 3
    _tag(g, 12, commit)
    assert offline_gatekeeper.generation_of(commit) == 12


def test_a_number_written_another_way_is_not_a_second_generation_of_that_number(offline_gatekeeper: Gatekeeper) -> None:
    """git's version sort puts gen/0010 below gen/9 (a leading zero sorts as a fraction) and a digit of
    another script is a digit to Python: such a tag must not be counted as a generation by one reader and
    not by another, or the next tag reuses its number."""
    g = offline_gatekeeper.git
    main = g.ref_value(MAIN_REF)
    _tag(g, 9, _commit(g, main, "nine"))
    odd = _commit(g, main, "tagged by hand")
    _tag(g, "0010", odd)
    _tag(g, "\u0661\u0662", odd)  # Arabic-Indic 12
    number = merge.tag(offline_gatekeeper.main_line, _commit(g, main, "next"))
    assert sorted(offline_gatekeeper.generations()) == [9, number]
    assert offline_gatekeeper.generation_of(odd) is None
    assert offline_gatekeeper.latest_generation()[0] == number
