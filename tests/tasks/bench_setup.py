"""A live instance for the bench tests: real git, the demo's sample project as a real mirror, gen tags,
and a set file of the demo's two tasks (SWE-bench-style JSONL)."""

from __future__ import annotations

import json
from pathlib import Path

from supervisor.base.git_ops import GEN_TAG_PREFIX, Git
from supervisor.cli.demo import SAMPLE, sample_project_dir, sample_repository
from supervisor.store.instance import Instance
from supervisor.store.projects import ProjectConfig, ProjectRegistry
from supervisor.work.mirror import create_mirror, resolve_commit

# The sample project's tests that pass on its base (PASS_TO_PASS, as SWE-bench lists them).
PASSING = [
    "tests/test_stats.py::test_mean",
    "tests/test_stats.py::test_mean_of_empty_list_fails",
    "tests/test_stats.py::test_median_of_odd_length",
    "tests/test_stats.py::test_mode",
]


def add_sample_project(live: Instance, scratch: Path) -> str:
    """Register the sample project in `live`; its base commit."""
    registry = ProjectRegistry(live.projects)
    source = sample_repository(scratch / "sample_project")
    create_mirror(registry, ProjectConfig(name=SAMPLE, source=str(source), test_deadline_s=300))
    return resolve_commit(registry.mirror(SAMPLE), "main")


def demo_set(path: Path, base: str) -> Path:
    """The demo's two tasks as a set: median (the scripted agent fixes it), mode (it gets it wrong)."""
    patch = (sample_project_dir().parent / "sample_tasks" / "mode_tie.test.patch").read_text()
    lines = [
        {
            "instance_id": "sample__median-1",
            "repo": SAMPLE,
            "base_commit": base,
            "title": "median() is wrong for lists of even length",
            "problem_statement": "median([4, 1, 3, 2]) returns 3; it must return 2.5, the mean of the two middle values.",
            "FAIL_TO_PASS": ["tests/test_stats.py::test_median_of_even_length"],
            "PASS_TO_PASS": json.dumps(PASSING),  # SWE-bench stores the lists as JSON strings
            "test_patch": "",
            "patch": "the reference fix: never given to the agent",
            "priority": 10,
        },
        {
            "instance_id": "sample__mode-2",
            "repo": SAMPLE,
            "base_commit": base,
            "title": "mode() must return the smallest value on a tie",
            "problem_statement": "mode([3, 3, 1, 1, 2]) must return 1: when several values are most common, "
            "the smallest wins.",
            "FAIL_TO_PASS": ["tests/test_stats.py::test_mode_of_a_tie_is_the_smallest"],
            "PASS_TO_PASS": PASSING,
            "test_patch": patch,
            "priority": 5,
        },
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def tag_generations(live: Instance, count: int) -> list[str]:
    """`count` generations without a gate (unit tests): gen/0 at main, then empty commits on it."""
    git = Git(live.repo)
    main = git.ref_value("refs/heads/main")
    assert main is not None
    commits = [main]
    for n in range(1, count):
        commit = git.commit_tree(git.tree_of(commits[-1]), [commits[-1]], f"Generation {n}\n")
        commits.append(commit)
    for n, commit in enumerate(commits):
        git.update_ref(f"{GEN_TAG_PREFIX}{n}", commit, "0" * 40)
    git.run("update-ref", "refs/heads/main", commits[-1])
    return commits


def live_state(live: Instance) -> dict[str, object]:
    """What must not change in the live instance: refs, the decision log, the queue, the project mirror."""
    mirror = ProjectRegistry(live.projects).mirror(SAMPLE)
    log = live.state / "decisions.jsonl"
    return {
        "refs": Git(live.repo).refs(),
        "mirror_refs": Git(mirror).refs(),
        "log": log.read_bytes() if log.exists() else b"",
        "tasks_db": live.tasks_db.exists(),
        "objects": sorted(p.name for p in (live.repo / "objects").iterdir()),
        "mirror_objects": sorted(str(p.relative_to(mirror)) for p in (mirror / "objects").rglob("*")),
    }
