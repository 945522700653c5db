"""A hostile agent on a task, in its real container, under a real supervisor that is killed mid-task.

The agent tries to write its task file and the folder above its work area, plants links, a FIFO,
a 100 MB file, a nested .git, deep folders and 100,000 empty files, sends junk and a result for a
task it does not hold, then its real "done" twice. The supervisor is killed -9 while the task runs
and resumes the same attempt on the same area; the verdict lists what was refused and nothing was
followed; the next task (a project whose tests cannot run on its base) is `infrastructure`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from supervisor.cli.demo import SAMPLE, sample_repository
from supervisor.store.projects import ProjectConfig, ProjectRegistry
from supervisor.store.tasks.models import NewTask, TaskState
from supervisor.store.tasks.sqlite_queue import open_queue
from supervisor.work.mirror import create_mirror, resolve_commit
from tests.chaos.chaos_instance import chaos_instance
from tests.system.conftest import SupervisorProcess, containers_of, gatekeeper_of, wait_until

pytestmark = pytest.mark.docker

HOSTILE_AGENT = r"""
import json, os, time, uuid, datetime
journal = os.path.join(os.environ["OUROBOROS_WORKSPACE"], "agent", "journal")
out = os.environ["OUROBOROS_OUTBOX"]
seen = os.path.join(journal, "hostile.json")

def record(**fields):
    state = json.load(open(seen)) if os.path.exists(seen) else {}
    state.update(fields)
    open(seen + ".tmp", "w").write(json.dumps(state))
    os.replace(seen + ".tmp", seen)
    return state

def tried(action):
    try:
        action()
        return "done"
    except OSError as exc:
        return type(exc).__name__

def drop(name, data):
    with open(os.path.join(out, name + ".tmp"), "wb") as f:
        f.write(data)
    os.rename(os.path.join(out, name + ".tmp"), os.path.join(out, name))

def done(task_id, summary):
    mid = uuid.uuid4().hex
    drop("task-" + mid + ".json", json.dumps({"version": 2, "kind": "task-result", "id": mid, "task": task_id,
         "summary": summary, "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat()}).encode())

def plant(area):
    os.symlink("/etc/passwd", os.path.join(area, "passwd"))
    os.symlink("/ouroboros/task", os.path.join(area, "taskdir"))
    os.mkfifo(os.path.join(area, "pipe"))
    with open(os.path.join(area, "big.bin"), "wb") as f:
        for _ in range(100):
            f.write(b"\0" * (1 << 20))
    os.makedirs(os.path.join(area, "vendor", ".git"))
    open(os.path.join(area, "vendor", ".git", "config"), "w").write("[core]\n\tfsmonitor = touch /tmp/x\n")
    os.makedirs(os.path.join(area, *(["d"] * 200)))
    many = os.path.join(area, "many")
    os.mkdir(many)
    for n in range(100000):
        open(os.path.join(many, str(n)), "w").close()

while True:
    time.sleep(0.3)
    try:
        task = json.load(open(os.environ["OUROBOROS_TASK_FILE"]))
    except (OSError, ValueError):
        continue
    state = record()
    key = "task-%s" % task["id"]
    if task["project"] != "sample":
        if key not in state:
            record(**{key: "done"})
            done(task["id"], "nothing to do")
        continue
    if key not in state:
        area = task["path"]
        record(**{key: "planting",
                  "write-task-file": tried(lambda: open(os.environ["OUROBOROS_TASK_FILE"], "w").write("{}")),
                  "write-projects": tried(lambda: open("/projects/evil", "w").write("x")),
                  "replace-area": tried(lambda: os.rename(area, "/projects/moved")),
                  "other-areas": sorted(os.listdir("/projects"))})
        plant(area)
        record(**{key: "planted"})
    elif state[key] == "planted" and os.path.exists(os.path.join(journal, "go")):
        record(**{key: "said done"})
        drop("junk.json", b"\xff\xfe not json")
        os.mkdir(os.path.join(out, "folder.json"))
        done(999, "not mine")
        done(task["id"], "hostile work")
        done(task["id"], "hostile work")
"""


def _hostile(instance) -> dict:
    path = instance.journal / "hostile.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _queue_tasks(instance, scratch: Path) -> tuple[int, int]:
    registry = ProjectRegistry(instance.projects)
    create_mirror(
        registry, ProjectConfig(name=SAMPLE, source=str(sample_repository(scratch / "s")), test_deadline_s=120)
    )
    broken = ProjectConfig(
        name="broken",
        source=str(sample_repository(scratch / "b")),
        test_command=["python", "-m", "pytest", "-q", "no/such/tests"],
        test_deadline_s=120,
    )
    create_mirror(registry, broken)
    queue = open_queue(instance.tasks_db)
    try:
        first = queue.add(
            NewTask(
                project=SAMPLE,
                title="hostile",
                base_commit=resolve_commit(registry.mirror(SAMPLE), "main"),
                fail_to_pass=["tests/test_stats.py::test_median_of_even_length"],
                priority=2,
            )
        )
        second = queue.add(
            NewTask(
                project="broken",
                title="tests cannot run",
                base_commit=resolve_commit(registry.mirror("broken"), "main"),
            )
        )
    finally:
        queue.close()
    return first.id, second.id


def test_a_hostile_agent_on_a_task_through_a_kill_gets_a_verdict_and_the_next_task_runs(
    tmp_path, docker_engine, agent_image
) -> None:
    instance = chaos_instance(tmp_path / "home", docker_engine, agent_image, agent=HOSTILE_AGENT)
    first, second = _queue_tasks(instance, tmp_path)
    area = instance.task_work / "projects" / SAMPLE
    try:
        process = SupervisorProcess(instance)
        process.wait_for(rf"task {first} started", timeout=180)
        assert wait_until(lambda: _hostile(instance).get(f"task-{first}") == "planted", timeout=240)
        process.kill9()
        assert (area / "big.bin").stat().st_size == 100 << 20  # the area survives the kill as it was

        process = SupervisorProcess(instance)
        process.wait_for(rf"task {first}: resumed \(attempt 1\)", timeout=180)
        (instance.journal / "go").write_text("")
        process.wait_for(rf"task {first}: (passed|failed|infrastructure)", timeout=300)
        process.wait_for(rf"task {second}: infrastructure", timeout=300)
        time.sleep(1)
        assert process.process.poll() is None, "the supervisor stopped"
        assert process.terminate() == 0
    finally:
        docker_engine.reconcile(instance=instance.instance_id)

    seen = _hostile(instance)
    assert seen["write-task-file"] != "done" and seen["write-projects"] != "done" and seen["replace-area"] != "done"
    assert seen["other-areas"] == [SAMPLE]
    queue = open_queue(instance.tasks_db)
    try:
        task = queue.get(first)
        assert task.state is TaskState.FAILED and task.verdict is not None, task
        assert task.attempts == 1 and len(queue.attempts(first)) == 1
        assert task.verdict.needs_review and task.verdict.refused
        assert queue.get(second).state is TaskState.INFRASTRUCTURE
        assert "cannot run on the base" in (queue.get(second).verdict.reason or "")
    finally:
        queue.close()
    assert Path("/etc/passwd").read_text().startswith("root:")
    assert not area.exists() and containers_of(docker_engine, instance) == []
    records = list(gatekeeper_of(instance, docker_engine, agent_image).log.records())
    judged = [r.details for r in records if r.kind == "task-judged"]
    assert sorted((d["task"], d["applied"]) for d in judged) == [(first, True), (second, True)]
    assert [r for r in records if r.kind == "task-result-refused"]
