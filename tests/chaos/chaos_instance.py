"""An instance for kill tests: a cheap gate on main and an agent that proposes every cycle."""

from __future__ import annotations

import json
from pathlib import Path

from supervisor.gatekeeper import Gatekeeper
from supervisor.git_ops import MAIN_REF, Git
from supervisor.init_instance import init_instance, package_dir
from supervisor.instance import Instance

CHEAP_GATE = """\
[gate]
command = ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "agent/chaos_tests"]
deadline_s = 120
test_paths = ["agent/chaos_tests/"]
memory_paths = ["agent/journal/", "agent/goals/"]
"""
CHEAP_TEST = "def test_main_is_fine():\n    assert True\n"

# Runs in the agent container from main's read-only code: proposes, waits a little, proposes again.
# Every proposal written is listed (after its rename) in the journal, which lives outside the repo.
PROPOSING_AGENT = r"""
import datetime, json, os, random, time, uuid
ws, out = os.environ["OUROBOROS_WORKSPACE"], os.environ["OUROBOROS_OUTBOX"]
written = os.path.join(ws, "agent", "journal", "chaos-written.txt")
folder = os.path.join(ws, "agent", "chaos")
os.makedirs(folder, exist_ok=True)
while True:
    time.sleep(random.uniform(0.1, 0.8))
    pid = uuid.uuid4().hex
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
        "[agent]\n", "[agent]\nstop_grace_s = 1\ncommand = " + json.dumps(["python", "-c", agent]) + "\n", 1)
    # Kill tests are about the supervisor's states, not the candidate's behaviour: held-out
    # acceptance (its own tests in tests/acceptance) would add ~15 s to every one of many gates.
    config += "\n[acceptance]\nenabled = false\n"
    instance.config_path.write_text(config)
    _commit_on_main(Git(instance.repo), {"gate.toml": CHEAP_GATE, "agent/chaos_tests/test_main.py": CHEAP_TEST})
    Gatekeeper(instance.repo, engine, journal_root=instance.journal, image=image,
               instance=instance.instance_id).genesis()
    return instance


def _commit_on_main(git: Git, files: dict[str, str]) -> None:
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
