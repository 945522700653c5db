"""An instance for kill tests: a cheap gate on main, an agent that proposes every cycle and works on tasks."""

from __future__ import annotations

import json
from pathlib import Path

from scripted_model.served import read_served
from supervisor.base.git_ops import MAIN_REF, Git
from supervisor.cli.demo import SAMPLE, sample_repository
from supervisor.gate.gatekeeper import Gatekeeper
from supervisor.route import LEDGER_FILE_NAME
from supervisor.store.decision_log import DecisionLog
from supervisor.store.instance import Instance
from supervisor.store.instance_init import init_instance, package_dir
from supervisor.store.projects import ProjectConfig, ProjectRegistry
from supervisor.store.tasks.models import FINAL, VERDICTS, NewTask, TaskState
from supervisor.store.tasks.sqlite_queue import open_queue
from supervisor.work.mirror import create_mirror, resolve_commit
from tests.chaos.ledger_audit import Audit, audit_ledger

CHEAP_GATE = """\
[gate]
command = ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "agent/chaos_tests"]
deadline_s = 120
test_paths = ["agent/chaos_tests/"]
memory_paths = ["agent/journal/", "agent/goals/"]
"""
CHEAP_TEST = "def test_main_is_fine():\n    assert True\n"

# Runs in the agent container from main's read-only code: asks the model through the supervisor's
# route a few times (the real SDK, built as the real agent builds it), proposes, waits, and again.
# Every proposal written is listed (after its rename) in the journal, which lives outside the repo.
# When a task is given it edits the project's work area and, now and then, says it is done (the
# same task again and again until the supervisor withdraws it: repeats are part of the test).
# A small max_tokens keeps each worst-case reservation small, so the caps never refuse the agent.
PROPOSING_AGENT = r"""
import datetime, json, os, random, time, uuid
from agent.config import AgentConfig
from agent.llm import build_sdk_client
ws, out = os.environ["OUROBOROS_WORKSPACE"], os.environ["OUROBOROS_OUTBOX"]
written = os.path.join(ws, "agent", "journal", "chaos-written.txt")
folder = os.path.join(ws, "agent", "chaos")
os.makedirs(folder, exist_ok=True)
config = AgentConfig.from_env(max_retries=0)
client = build_sdk_client(config)

def ask(pid):
    request = dict(model=config.model, max_tokens=128, extra_headers={"x-ouroboros-cycle": pid},
                   messages=[{"role": "user", "content": "Plan the next chaos file " + pid}])
    try:
        if random.random() < 0.5:
            client.messages.create(**request)
        else:
            with client.messages.stream(**request) as stream:
                stream.get_final_message()
    except Exception as exc:  # the route went away with a killed supervisor: propose anyway
        print("chaos agent: model call failed:", type(exc).__name__, flush=True)

def task_step():
    try:
        with open(os.environ["OUROBOROS_TASK_FILE"]) as f:
            task = json.load(f)
        with open(os.path.join(task["path"], "chaos_fix.txt"), "a") as f:
            f.write("worked on task %s\n" % task["id"])
    except (OSError, ValueError, KeyError):
        return
    if random.random() < 0.8:  # a task lasts a few cycles: kills land while it runs too
        return
    mid = uuid.uuid4().hex
    message = {"version": 2, "kind": "task-result", "id": mid, "task": task["id"], "summary": "Chaos work",
               "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat()}
    with open(os.path.join(out, "task-" + mid + ".json.tmp"), "w") as f:
        f.write(json.dumps(message))
    os.rename(os.path.join(out, "task-" + mid + ".json.tmp"), os.path.join(out, "task-" + mid + ".json"))

while True:
    time.sleep(random.uniform(0.1, 0.8))
    task_step()
    pid = uuid.uuid4().hex
    for step in range(3):  # plan, execute, reflect: a few calls per proposal, as the real agent makes
        ask(pid)
    with open(os.path.join(folder, pid + ".txt"), "w") as f:
        f.write(pid + "\n")
    message = {"version": 1, "kind": "proposal", "id": pid, "why": "Chaos: one more file.",
               "summary": "Add chaos file " + pid[:8],
               "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat()}
    with open(os.path.join(out, pid + ".json.tmp"), "w") as f:
        f.write(json.dumps(message))
    os.rename(os.path.join(out, pid + ".json.tmp"), os.path.join(out, pid + ".json"))
    with open(written, "a") as f:
        f.write(pid + "\n")
        f.flush()
        os.fsync(f.fileno())
"""


def chaos_instance(home: Path, engine, image: str, agent: str = PROPOSING_AGENT) -> Instance:
    scenario = package_dir("scripted_model") / "scenarios" / "idle_loop.json"
    instance = init_instance(home, scenario, model="claude-sonnet-5-5")
    config = instance.config_path.read_text().replace(
        "[agent]\n", "[agent]\nstop_grace_s = 1\ncommand = " + json.dumps(["python", "-c", agent]) + "\n", 1
    )
    # Kill tests are about the supervisor's states, not the candidate's behaviour: held-out
    # acceptance (its own tests in tests/acceptance) would add ~15 s to every one of many gates.
    config += "\n[acceptance]\nenabled = false\n"
    instance.config_path.write_text(config)
    commit_on_main(Git(instance.repo), {"gate.toml": CHEAP_GATE, "agent/chaos_tests/test_main.py": CHEAP_TEST})
    Gatekeeper(
        instance.repo, engine=engine, journal_root=instance.journal, image=image, instance=instance.instance_id
    ).genesis()
    return instance


def commit_on_main(git: Git, files: dict[str, str]) -> None:
    main = git.out("rev-parse", MAIN_REF)
    index = git.git_dir / "chaos-index"
    git.run("read-tree", main, index_file=index)
    for path, text in files.items():
        blob = git.run("hash-object", "-w", "--stdin", input=text.encode()).stdout.decode().strip()
        git.run("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", index_file=index)
    tree = git.out("write-tree", index_file=index)
    index.unlink()
    commit = git.commit_tree(tree, [main], "A cheap gate for kill tests\n")
    git.update_ref(MAIN_REF, commit, main)


def ledger_audit(instance: Instance, served_log: Path, kills: int) -> Audit:
    """The route's ledger against what the scripted model served; one cut request per kill at most
    (the agent sends one request at a time), none at the final clean stop."""
    price = instance.config().route.pricing.price_for(instance.config().agent.model or "")
    if price is None:
        raise AssertionError("the chaos model has no price")
    return audit_ledger(read_served(served_log), instance.state / LEDGER_FILE_NAME, price, interrupted=kills)


def written_ids(instance: Instance) -> list[str]:
    path = instance.journal / "chaos-written.txt"
    return path.read_text().split() if path.exists() else []


def decisions_per_proposal(gatekeeper: Gatekeeper) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for record in gatekeeper.log.records():
        if record.kind == "proposal-dropped":
            for proposal_id in record.details.get("proposals", []):
                found.setdefault(proposal_id, []).append(record.kind)
        elif record.kind in ("accepted", "rejected", "needs-approval", "infrastructure-error"):
            proposal_id = record.details.get("proposal")
            if proposal_id:
                found.setdefault(proposal_id, []).append(record.kind)
    return found


def queue_chaos_tasks(instance: Instance, scratch: Path, count: int) -> list[int]:
    """The sample project registered and `count` tasks on it (the agent's edits fail them: any verdict will do)."""
    registry = ProjectRegistry(instance.projects)
    create_mirror(registry, ProjectConfig(name=SAMPLE, source=str(sample_repository(scratch)), test_deadline_s=120))
    base = resolve_commit(registry.mirror(SAMPLE), "main")
    queue = open_queue(instance.tasks_db)
    try:
        news = [
            NewTask(
                project=SAMPLE,
                title=f"chaos task {number}",
                base_commit=base,
                fail_to_pass=["tests/test_stats.py::test_median_of_even_length"],
            )
            for number in range(count)
        ]
        return [task.id for task in queue.add_many(news)]
    finally:
        queue.close()


def task_problems(instance: Instance, log: DecisionLog) -> tuple[list[str], dict[TaskState, int]]:
    """What breaks the task invariants: a task neither final nor resumable by this instance, an attempt
    with two applied verdicts in the log, a verdict never logged, attempts that overlap."""
    problems: list[str] = []
    applied: dict[tuple[int, int], int] = {}
    for record in log.records():
        if record.kind == "task-judged" and record.details.get("applied"):
            key = (int(record.details["task"]), int(record.details["attempt"]))
            applied[key] = applied.get(key, 0) + 1
    problems += [f"task {t} attempt {a} has {n} applied verdicts" for (t, a), n in applied.items() if n > 1]
    queue = open_queue(instance.tasks_db)
    try:
        spans = []
        for task in queue.find():
            if task.state not in FINAL and task.state is not TaskState.QUEUED and task.worker != instance.instance_id:
                problems.append(f"task {task.id} is {task.state} held by {task.worker!r}, not this instance")
            if task.state in VERDICTS and applied.get((task.id, task.attempts)) != 1:
                problems.append(f"task {task.id} is {task.state} but its verdict is not logged once")
            spans += [(a.started_at, a.ended_at, task.id, a.number) for a in queue.attempts(task.id)]
        spans.sort(key=lambda span: span[0])
        for (_, end, task_id, number), (start, _, next_id, next_number) in zip(spans, spans[1:], strict=False):
            if end is None or end > start:
                problems.append(f"attempt {task_id}/{number} overlaps attempt {next_id}/{next_number}")
        counts = queue.counts()
    finally:
        queue.close()
    return problems, counts
