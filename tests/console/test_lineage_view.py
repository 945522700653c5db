"""The agent's read-only history, checked from inside a real agent container."""

from __future__ import annotations

import json
import uuid

import pytest

from supervisor.gate.agent_container import AgentFolders, agent_spec
from supervisor.loop import lineage_view
from supervisor.store.instance import AgentSettings

pytestmark = pytest.mark.docker

PROBE = r"""
import json, os, subprocess, sys
trusted = sys.argv[1]
def run(*args):
    done = subprocess.run(args, capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr
def writable(path):
    try:
        with open(path, "a"):
            return True
    except OSError:
        return False
git = ["git", "--git-dir=/history/repo.git"]
found = {
    "log": run(*git, "log", "--oneline", "--all", "--decorate"),
    "summary": open("/history/SUMMARY.md").read(),
    "tag": run(*git, "tag", "planted")[0],
    "branch": run(*git, "update-ref", "refs/heads/main", "HEAD~1")[0],
    "config": run(*git, "config", "--list", "--show-origin")[1],
    "writable": [p for p in ("/history/x", "/history/repo.git/HEAD", "/history/SUMMARY.md", "/history/gitconfig",
                             "/history/repo.git/config") if writable(p)],
    "alternates": os.path.exists("/history/repo.git/objects/info/alternates"),
    "trusted_visible": os.path.exists(trusted),
    "mentions_trusted": run("grep", "-rlF", trusted, "/history")[1],
}
print(json.dumps(found))
"""


def test_history_is_readable_and_nothing_in_it_is_writable_or_leads_back(demo, docker_engine, agent_image, tmp_path):
    folder = lineage_view.build(demo)
    assert not (folder / "repo.git" / "FETCH_HEAD").exists()
    mounts = {
        name: tmp_path / name
        for name in ("code", "workspace", "journal", "goals", "outbox", "route", "projects", "task")
    }
    for path in mounts.values():
        path.mkdir()
    spec = agent_spec(
        image=agent_image,
        instance_id=demo.instance_id,
        run_id=f"history-{uuid.uuid4().hex[:8]}",
        role="agent",
        settings=AgentSettings(),
        folders=AgentFolders(
            code=mounts["code"],
            workspace=mounts["workspace"],
            journal=mounts["journal"],
            goals=mounts["goals"],
            outbox=mounts["outbox"],
            route_dir=mounts["route"],
            history=lineage_view.folder_for(demo),
            projects=mounts["projects"],
            task=mounts["task"],
        ),
        route_env={},
        generation=1,
        command=["python3", "-c", PROBE, str(demo.repo)],
    )
    result = docker_engine.run(spec, deadline_s=60)
    assert result.ok, result.output
    found = json.loads(result.output.strip().splitlines()[-1])
    code, log = found["log"]
    assert code == 0, log
    assert "tag: gen/0" in log and "tag: gen/1" in log and "rejected/" in log
    assert "gen 1" in found["summary"] and "test_word_count" in found["summary"]
    assert found["tag"] != 0 and found["branch"] != 0
    assert found["writable"] == []
    assert not found["alternates"] and not found["trusted_visible"]
    assert found["mentions_trusted"] == ""
    assert "remote." not in found["config"] and str(demo.repo) not in found["config"]


def test_history_mirror_on_the_host_names_nothing_of_the_trusted_side(demo):
    folder = lineage_view.build(demo)
    trusted = str(demo.repo).encode()
    for path in folder.rglob("*"):
        if path.is_file():
            assert trusted not in path.read_bytes(), path
    assert not any(p.is_symlink() for p in folder.rglob("*"))
    assert lineage_view.build(demo) == folder  # a second start only fetches what is new
