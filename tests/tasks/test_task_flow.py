"""The task flow against a hostile agent, an operator and kills: real queue, mirror and files; a stand-in judge.

Each case ends with a clear refusal or verdict, follows no link, never hangs or raises out of the
flow (which would stop the supervisor), and the next task still starts.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sandbox.errors import EngineUnavailableError
from supervisor.base.git_ops import Git
from supervisor.store.protocol import MAX_MESSAGE_BYTES
from supervisor.store.tasks.models import TaskState
from tests.gate.repo_factory import git
from tests.tasks.flow_rig import FlowRig, Killed, SlowJudge, renewal_threads
from tests.tasks.task_factory import FIXED_OPS, make_mirror

_S = TaskState


@pytest.fixture
def rig(tmp_path: Path) -> FlowRig:
    return FlowRig(tmp_path)


def _two_tasks(rig: FlowRig) -> tuple[int, int]:
    first = rig.add("first", priority=2).id
    second = rig.add("second", priority=1).id
    rig.flow.recover()
    assert rig.state(first) is _S.RUNNING and rig.task_file()["id"] == first
    return first, second


# -- task-result messages -----------------------------------------------------------------------------


def test_a_result_for_a_task_not_held_is_refused_and_the_held_one_runs_on(rig: FlowRig) -> None:
    first, second = _two_tasks(rig)
    rig.done(second)
    rig.flow.take_results(rig.outbox)
    assert rig.state(first) is _S.RUNNING and rig.state(second) is _S.QUEUED
    assert rig.records("task-result-refused")[0]["held"] == f"task {first}"
    assert rig.note_kinds() == ["task-result-refused"]
    assert rig.outbox_files() == [] and rig.judge.calls == []


def test_a_result_for_a_task_id_no_queue_can_hold_is_refused(rig: FlowRig) -> None:
    first, _ = _two_tasks(rig)
    message = json.loads(rig.done(first).read_text())
    for path in rig.outbox.iterdir():
        path.unlink()
    (rig.outbox / "big.json").write_text(json.dumps({**message, "task": 2**70}))
    rig.flow.take_results(rig.outbox)
    assert rig.state(first) is _S.RUNNING and rig.outbox_files() == []
    assert rig.note_kinds() == ["task-result-refused"]


def test_a_result_for_a_cancelled_task_gives_no_verdict_and_the_next_task_starts(rig: FlowRig) -> None:
    first, second = _two_tasks(rig)
    rig.queue.cancel(first, "the operator changed their mind")
    rig.done(first)
    rig.flow.take_results(rig.outbox)
    assert rig.state(first) is _S.CANCELLED and rig.queue.get(first).verdict is None
    assert not [d for d in rig.judged(first) if d["applied"]]
    assert rig.state(second) is _S.RUNNING and rig.task_file()["id"] == second
    assert "task-withdrawn" in rig.note_kinds()
    assert [a.refused_late for a in rig.queue.attempts(first)] == [True]  # its result came after the end


def test_a_thousand_results_for_a_task_not_held_cost_one_note_and_no_hang(rig: FlowRig) -> None:
    first, second = _two_tasks(rig)
    for _ in range(1000):
        rig.done(second)
    started = time.monotonic()
    rig.flow.take_results(rig.outbox)
    assert time.monotonic() - started < 30
    assert rig.outbox_files() == []
    assert rig.note_kinds().count("task-result-refused") == 1
    assert len(rig.records("task-result-refused")) == 1  # throttled; the next one counts those held back
    assert rig.state(first) is _S.RUNNING and rig.state(second) is _S.QUEUED


def test_a_thousand_results_for_the_held_task_judge_it_once(rig: FlowRig) -> None:
    first, second = _two_tasks(rig)
    for _ in range(1000):
        rig.done(first)
    rig.flow.take_results(rig.outbox)
    assert len(rig.judge.calls) == 1 and rig.state(first) is _S.PASSED
    assert [d["applied"] for d in rig.judged(first)] == [True]
    assert rig.note_kinds().count("task-result-refused") <= 1
    assert rig.outbox_files() == [] and rig.state(second) is _S.RUNNING


@pytest.mark.parametrize("kind", ["huge", "garbled", "not-utf8", "symlink", "fifo", "folder", "wrong-fields"])
def test_a_broken_result_file_is_left_to_the_intake_without_a_hang(rig: FlowRig, kind: str, tmp_path: Path) -> None:
    first, _ = _two_tasks(rig)
    entry = rig.outbox / "task-result-x.json"
    if kind == "huge":
        entry.write_bytes(b'{"kind": "task-result", "summary": "' + b"a" * (MAX_MESSAGE_BYTES * 4) + b'"}')
    elif kind == "garbled":
        entry.write_bytes(b'{"kind": "task-result", "task": ')
    elif kind == "not-utf8":
        entry.write_bytes(b'{"kind": "task-result", "summary": "\xff\xfe"}')
    elif kind == "symlink":
        entry.symlink_to(rig.outbox.parent / "elsewhere.json")
        (rig.outbox.parent / "elsewhere.json").write_text(json.dumps({"version": 2, "kind": "task-result"}))
    elif kind == "fifo":
        os.mkfifo(entry)
    elif kind == "folder":
        entry.mkdir()
        (entry / "inner").write_text("x")
    else:
        entry.write_text(json.dumps({"version": 2, "kind": "task-result", "task": first, "summary": "x", "evil": 1}))
    started = time.monotonic()
    rig.flow.take_results(rig.outbox)
    assert time.monotonic() - started < 10
    assert rig.state(first) is _S.RUNNING and rig.judge.calls == []
    assert os.path.lexists(entry)  # the intake refuses it (and says so) and removes it


# -- the work area --------------------------------------------------------------------------------------


def test_planted_links_fifos_and_a_nested_git_are_refused_never_followed(rig: FlowRig, tmp_path: Path) -> None:
    first, second = _two_tasks(rig)
    area = rig.area
    (area / "calc" / "ops.py").write_text(FIXED_OPS)
    (area / "passwd").symlink_to("/etc/passwd")
    (area / "mirror").symlink_to(rig.mirror)
    (area / "home").symlink_to(rig.home)
    os.mkfifo(area / "pipe")
    (area / "vendor" / ".git").mkdir(parents=True)
    (area / "vendor" / ".git" / "config").write_text("[core]\n\tfsmonitor = touch /tmp/pwned\n")
    rig.done(first)
    rig.flow.take_results(rig.outbox)
    task = rig.queue.get(first)
    assert task.state is _S.PASSED and task.verdict is not None
    refused = " ".join(task.verdict.refused)
    for name in ("passwd", "mirror", "home", "pipe", "vendor/.git"):
        assert name in refused
    assert task.verdict.needs_review
    tree = {path for _, path in Git(rig.mirror).changed_paths(rig.base, task.result_commit)}
    assert tree == {"calc/ops.py"}
    assert Path("/etc/passwd").exists() and (rig.mirror / "HEAD").exists() and (rig.home / "tasks.sqlite3").exists()
    assert rig.state(second) is _S.RUNNING and rig.area.is_dir()


def test_deep_folders_and_many_empty_files_end_in_a_verdict(tmp_path: Path) -> None:
    rig = FlowRig(tmp_path, max_files=2000)
    first, second = _two_tasks(rig)
    fd = os.open(rig.area, os.O_RDONLY)
    for _ in range(1500):  # deeper than PATH_MAX and than Python's recursion limit
        os.mkdir("d", dir_fd=fd)
        inner = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = inner
    os.close(fd)
    for number in range(3000):
        (rig.area / f"empty-{number}").touch()
    rig.done(first)
    rig.flow.take_results(rig.outbox)
    task = rig.queue.get(first)
    assert task.state is _S.PASSED and task.verdict is not None and task.verdict.refused
    assert rig.state(second) is _S.RUNNING and not (rig.area / "d").exists()
    rig.flow.area.tidy()  # the set-aside area goes now (pytest's own clean-up of tmp_path recurses)
    assert not any(p.name.startswith(".gone-") for p in (rig.home / "task-work").iterdir())


def test_an_emptied_work_area_is_judged_as_it_is(rig: FlowRig) -> None:
    first, second = _two_tasks(rig)
    for entry in rig.area.iterdir():
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    rig.done(first)
    rig.flow.take_results(rig.outbox)
    task = rig.queue.get(first)
    assert task.state is _S.PASSED and Git(rig.mirror).tree_of(task.result_commit) != Git(rig.mirror).tree_of(rig.base)
    assert rig.state(second) is _S.RUNNING


@pytest.mark.parametrize("replacement", ["gone", "link-to-home", "link-to-etc", "file"])
def test_a_work_area_replaced_on_the_host_is_refused_and_nothing_is_followed(
    rig: FlowRig, replacement: str, tmp_path: Path
) -> None:
    first, second = _two_tasks(rig)
    bait = tmp_path / "bait"
    bait.mkdir()
    (bait / "keep.txt").write_text("the host's")
    shutil.rmtree(rig.area)
    if replacement == "link-to-home":
        rig.area.symlink_to(bait)
    elif replacement == "link-to-etc":
        rig.area.symlink_to("/etc")
    elif replacement == "file":
        rig.area.write_text("not a folder")
    rig.done(first)
    rig.flow.take_results(rig.outbox)
    task = rig.queue.get(first)
    assert task.state is _S.PASSED and task.verdict is not None  # the rig's judge passes anything
    assert task.verdict.refused and task.verdict.needs_review
    assert Git(rig.mirror).tree_of(task.result_commit) == Git(rig.mirror).tree_of(rig.base)
    assert (bait / "keep.txt").read_text() == "the host's" and Path("/etc/passwd").exists()
    assert os.stat(rig.area.parent).st_mode & 0o777 == 0o755  # still reachable by the agent's user
    assert rig.state(second) is _S.RUNNING and rig.area.is_dir() and not rig.area.is_symlink()


def test_a_leftover_area_of_another_project_is_removed_at_start(rig: FlowRig) -> None:
    stale = rig.area.parent / "other"
    stale.mkdir(parents=True)
    (stale / "secret.txt").write_text("another project's work")
    first = rig.add().id
    rig.flow.recover()
    assert rig.state(first) is _S.RUNNING
    assert sorted(os.listdir(rig.area.parent)) == ["calc"]


# -- the operator ---------------------------------------------------------------------------------------


def test_cancel_withdraws_the_task_removes_its_area_and_starts_the_next(rig: FlowRig) -> None:
    first, second = _two_tasks(rig)
    (rig.area / "work.txt").write_text("half done")
    rig.queue.cancel(first, "not needed")
    rig.flow.tick()
    assert "task-withdrawn" in rig.note_kinds()
    rig.flow.tick()
    assert rig.state(second) is _S.RUNNING and rig.task_file()["id"] == second
    assert not (rig.area / "work.txt").exists()
    rig.queue.retry(first)
    rig.done(second)
    rig.flow.take_results(rig.outbox)
    assert rig.state(first) is _S.RUNNING and rig.queue.get(first).attempts == 2


def test_removing_the_project_of_a_running_task_puts_it_back_in_the_queue(rig: FlowRig) -> None:
    first, _ = _two_tasks(rig)
    rig.registry.remove("calc")
    rig.flow.tick()
    assert rig.state(first) is _S.QUEUED
    assert "task-withdrawn" in rig.note_kinds() and not rig.area.exists() and rig.task_file() is None
    rig.flow.tick()  # nothing to claim: the project is gone
    assert rig.flow.active is None


def test_removing_the_project_before_the_result_puts_it_back_in_the_queue(rig: FlowRig) -> None:
    first, _ = _two_tasks(rig)
    rig.registry.remove("calc")
    rig.done(first)
    rig.flow.take_results(rig.outbox)
    assert rig.state(first) is _S.QUEUED and rig.outbox_files() == []


def test_a_base_commit_missing_from_the_mirror_is_infrastructure_and_the_next_task_starts(rig: FlowRig) -> None:
    missing = rig.add("gone base", base="0123456789abcdef0123456789abcdef01234567", priority=5).id
    good = rig.add("fine").id
    rig.flow.recover()
    assert rig.state(missing) is _S.INFRASTRUCTURE and rig.state(good) is _S.RUNNING
    assert "task-verdict" not in rig.note_kinds()  # not the agent's doing


def test_a_mirror_that_lost_the_base_commit_before_the_result_is_infrastructure(rig: FlowRig, tmp_path: Path) -> None:
    first, second = _two_tasks(rig)
    other, new_base = make_mirror(tmp_path / "rewritten", {"README.md": "history rewritten\n"})
    shutil.rmtree(rig.mirror)
    shutil.copytree(other, rig.mirror)  # a forced fetch and a gc: the base is gone
    third = rig.add("on the new history", base=new_base).id
    rig.done(first)
    rig.flow.take_results(rig.outbox)
    task = rig.queue.get(first)
    assert task.state is _S.INFRASTRUCTURE and "fetch" in task.verdict.reason
    assert rig.state(second) is _S.INFRASTRUCTURE  # its base is gone too: set up, refused, the next one tried
    assert rig.outbox_files() == [] and rig.state(third) is _S.RUNNING
    assert "task-verdict" in rig.note_kinds()


# -- limits -----------------------------------------------------------------------------------------------


def test_past_the_deadline_the_task_gives_up_and_the_agent_is_told(tmp_path: Path) -> None:
    rig = FlowRig(tmp_path, task_deadline_s=0.01)
    first, second = _two_tasks(rig)
    time.sleep(0.05)
    rig.flow.tick()
    task = rig.queue.get(first)
    assert task.state is _S.GAVE_UP and "deadline" in task.verdict.reason
    assert "task-verdict" in rig.note_kinds() and [d["applied"] for d in rig.judged(first)] == [True]
    rig.flow.tick()
    assert rig.state(second) in (_S.RUNNING, _S.GAVE_UP)


def test_past_the_token_budget_the_task_gives_up(rig: FlowRig) -> None:
    first, second = _two_tasks(rig)
    rig.spent += 100_001
    rig.flow.tick()
    task = rig.queue.get(first)
    assert task.state is _S.GAVE_UP and task.verdict.tokens == 100_001
    rig.flow.tick()
    assert rig.state(second) is _S.RUNNING


# -- kills and outages ----------------------------------------------------------------------------------


def test_a_kill_while_running_resumes_the_same_attempt_on_the_same_area(rig: FlowRig) -> None:
    first, _ = _two_tasks(rig)
    (rig.area / "calc" / "ops.py").write_text(FIXED_OPS)
    rig.restart()
    assert rig.state(first) is _S.RUNNING and rig.queue.get(first).attempts == 1
    assert (rig.area / "calc" / "ops.py").read_text() == FIXED_OPS and rig.task_file()["id"] == first
    assert len(rig.queue.attempts(first)) == 1


def _killed_at(rig: FlowRig, monkeypatch: pytest.MonkeyPatch, target: object, name: str) -> None:
    def die(*args: object, **kwargs: object) -> None:
        raise Killed(name)

    monkeypatch.setattr(target, name, die)


def test_a_kill_between_the_commit_and_judging_judges_it_once_after_the_restart(
    rig: FlowRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = _two_tasks(rig)
    rig.spent = 500
    rig.done(first)
    with monkeypatch.context() as patch:
        _killed_at(rig, patch, rig.queue, "mark_judging")
        with pytest.raises(Killed):
            rig.flow.take_results(rig.outbox)
    rig.restart()
    rig.flow.take_results(rig.outbox)
    assert rig.state(first) is _S.PASSED and len(rig.judge.calls) == 1
    assert [d["applied"] for d in rig.judged(first)] == [True] and rig.judged(first)[0]["tokens"] == 500
    assert rig.state(second) is _S.RUNNING and "task-result-refused" not in rig.note_kinds()


def test_a_kill_while_judged_judges_it_once_with_its_tokens_and_refusals(
    rig: FlowRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = _two_tasks(rig)
    (rig.area / "passwd").symlink_to("/etc/passwd")
    rig.spent = 700
    rig.done(first)
    with monkeypatch.context() as patch:
        _killed_at(rig, patch, rig.judge, "judge")
        with pytest.raises(Killed):
            rig.flow.take_results(rig.outbox)
    assert rig.state(first) is _S.JUDGING
    rig.restart()
    rig.flow.take_results(rig.outbox)  # the "done" a kill left in the outbox: already taken
    task = rig.queue.get(first)
    assert task.state is _S.PASSED and task.verdict.tokens == 700 and task.verdict.refused
    assert [d["applied"] for d in rig.judged(first)] == [True]
    assert "task-result-refused" not in rig.note_kinds() and rig.outbox_files() == []
    assert rig.state(second) is _S.RUNNING


def test_a_kill_between_the_verdict_and_its_record_logs_it_once_at_the_restart(
    rig: FlowRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = _two_tasks(rig)
    rig.done(first)
    with monkeypatch.context() as patch:
        _killed_at(rig, patch, rig.decisions, "append")
        with pytest.raises(Killed):
            rig.flow.take_results(rig.outbox)
    assert rig.state(first) is _S.PASSED and rig.judged(first) == []
    rig.restart()
    rig.restart()
    assert [d["applied"] for d in rig.judged(first)] == [True] and len(rig.judge.calls) == 1
    assert rig.note_kinds().count("task-verdict") == 1 and rig.state(second) is _S.RUNNING


def test_a_kill_between_the_verdict_and_the_area_removal_leaves_no_area_and_no_second_verdict(
    rig: FlowRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = rig.add("first", priority=2).id
    rig.flow.recover()
    (rig.area / "leftover.txt").write_text("the judged attempt's")
    rig.done(first)
    with monkeypatch.context() as patch:
        _killed_at(rig, patch, rig.flow.area, "remove")
        with pytest.raises(Killed):
            rig.flow.take_results(rig.outbox)
    rig.restart()
    assert not rig.area.exists() and rig.task_file() is None
    assert [d["applied"] for d in rig.judged(first)] == [True]


def test_an_engine_outage_while_judging_leaves_the_task_judging_until_it_answers(rig: FlowRig) -> None:
    first, second = _two_tasks(rig)
    rig.judge.down = True
    rig.spent = 300
    rig.done(first)
    rig.flow.take_results(rig.outbox)
    rig.done(first, "said again while it waits")
    rig.flow.take_results(rig.outbox)
    for _ in range(3):
        rig.flow.tick()
    assert "task-withdrawn" not in rig.note_kinds() and rig.outbox_files() == []
    assert rig.state(first) is _S.JUDGING and rig.queue.get(first).verdict is None
    assert rig.state(second) is _S.QUEUED  # no new attempt while one waits for its verdict
    rig.restart()  # the outage outlasts a restart too
    assert rig.state(first) is _S.JUDGING and rig.state(second) is _S.QUEUED and rig.judged(first) == []
    rig.judge.down = False
    rig.flow.tick()
    assert rig.state(first) is _S.PASSED and [d["applied"] for d in rig.judged(first)] == [True]
    assert rig.queue.get(first).verdict.tokens == 300
    rig.flow.tick()
    assert rig.state(second) is _S.RUNNING


def test_attempts_never_overlap_across_many_restarts(rig: FlowRig) -> None:
    ids = [rig.add(f"task {n}").id for n in range(4)]
    rig.flow.recover()
    for round_ in range(8):
        active = rig.flow.active
        if active is None:
            break
        if round_ % 2:
            rig.done(active.claim.task_id)
            rig.flow.take_results(rig.outbox)
        rig.restart()
    spans = sorted(
        (a.started_at, a.ended_at or a.started_at.replace(year=9999)) for t in ids for a in rig.queue.attempts(t)
    )
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert end <= start, spans
    assert git(rig.mirror, "for-each-ref", "refs/ouroboros/tasks/")


def test_the_route_charges_the_running_tasks_project_and_nothing_between_tasks(tmp_path: Path) -> None:
    from supervisor.loop.task_flow import Holding

    charged: list[str | None] = []
    rig = FlowRig(tmp_path, holding=Holding(worker="rig-instance", charge=charged.append))
    first = rig.add("first").id
    rig.flow.recover()
    assert charged == ["calc"]
    rig.done(first)
    rig.flow.take_results(rig.outbox)
    assert charged == ["calc", None] and rig.state(first) is _S.PASSED


# -- the lease while the work is committed and judged -----------------------------------------------


def _lease_left_s(rig: FlowRig, task: int) -> float:
    lease = rig.queue.get(task).lease_expires_at
    assert lease is not None
    return (lease - datetime.now(UTC)).total_seconds()


def test_a_long_judge_keeps_the_lease_renewed_and_the_renewals_end_with_it(tmp_path: Path) -> None:
    from supervisor.loop.task_flow import Holding

    rig = FlowRig(tmp_path, holding=Holding(worker="rig-instance", lease_s=3600, renew_s=0.2))
    task = rig.add().id
    rig.flow.recover()
    left: list[float] = []
    rig.flow.judge = SlowJudge(2.0, at=1.5, meanwhile=lambda: left.append(_lease_left_s(rig, task)))
    rig.done(task)
    rig.flow.take_results(rig.outbox)
    assert left[0] > 3600 - 0.8  # renewed within the last moments, not only before the judge began (1.5 s ago)
    assert rig.state(task) is _S.PASSED and [d["applied"] for d in rig.judged(task)] == [True]
    assert renewal_threads() == []


@pytest.mark.parametrize("error", [EngineUnavailableError("the engine went away"), Killed("kill -9 mid-judge")])
def test_renewals_stop_when_the_judge_ends_with_an_error(tmp_path: Path, error: BaseException) -> None:
    from supervisor.loop.task_flow import Holding

    rig = FlowRig(tmp_path, holding=Holding(worker="rig-instance", lease_s=3600, renew_s=0.1))
    task = rig.add().id
    rig.flow.recover()
    rig.flow.judge = SlowJudge(0.5, raises=error)
    rig.done(task)
    if isinstance(error, Killed):
        with pytest.raises(Killed):
            rig.flow.take_results(rig.outbox)
    else:
        rig.flow.take_results(rig.outbox)  # judged again once the engine answers
    assert renewal_threads() == [] and rig.state(task) is _S.JUDGING
    lease = rig.queue.get(task).lease_expires_at
    time.sleep(0.4)
    assert rig.queue.get(task).lease_expires_at == lease  # nothing renews it behind the loop's back
