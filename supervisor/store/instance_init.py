"""`supervisor init`: a new instance from the packaged agent, its first commit gated as generation 0."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from supervisor.base.errors import ConfigError
from supervisor.base.git_ops import MAIN_REF, ZERO, Git, safe_env
from supervisor.store.instance import CONFIG_NAME, Instance

# What an agent repository is made of, taken from the installed (pristine) packages, never run.
PACKAGES = ("agent", "scripted_model")
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".hypothesis")
MEMORY_FOLDERS = ("journal", "goals")
STAGING_PREFIX = ".ouroboros-init-"

AGENT_GATE_TOML = """\
# The gate this agent's proposals must pass (protected: a proposal cannot change it).
# Every field and its default: docs/gate.md.
[gate]
command = ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "agent/tests"]
deadline_s = 300
test_paths = ["agent/tests/"]
memory_paths = ["agent/journal/", "agent/goals/"]
"""

AGENT_GITIGNORE = "__pycache__/\n*.pyc\n.pytest_cache/\n"

CONFIG_TEMPLATE = """\
# Ouroboros instance configuration. Every field and its default: docs/operations.md.
{scenario_line}
[agent]
memory_mb = 1024
cpus = 1.0
{agent_lines}
[probation]
max_restarts = 5           # crashes tolerated within window_s ...
window_s = 10              # ... before the new generation is rolled back
probation_s = 60           # a generation that survives this long is marked good
max_consecutive_rollbacks = 3

[route.caps.per_day]
usd = 50

[route.caps.per_cycle]
tokens = 2000000
usd = 5
"""


def package_dir(name: str) -> Path:
    """Where an installed package lives, found without importing (executing) it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the packaged `{name}` is missing from this installation; reinstall ouroboros")
    return Path(list(spec.submodule_search_locations)[0])


def init_instance(
    home: Path, scenario: Path | None = None, max_cycles: int | None = None, model: str | None = None
) -> Instance:
    """Create HOME with a bare agent repository whose main holds the packaged agent.

    Atomic: everything is made in a hidden sibling directory, then renamed into place in one step,
    so a failure or a kill at any point leaves HOME as it was (absent or empty); the next init
    removes the sibling a dead init left behind.
    """
    home = home.resolve()
    if home.exists() and (not home.is_dir() or any(home.iterdir())):
        raise ConfigError(f"{home} exists and is not an empty directory; choose a new directory for the instance")
    home.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_attempts(home)
    staging = home.parent / f"{STAGING_PREFIX}{home.name}.{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _build(Instance(staging), scenario, max_cycles, model)
        os.rename(staging, home)  # replaces an empty HOME; fails (leaving it untouched) if it filled meanwhile
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, PermissionError):
            raise
        raise ConfigError(f"could not create the instance in {home}: {exc}") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Instance(home)


def _remove_dead_attempts(home: Path) -> None:
    """Staging directories of inits that were killed (their pid no longer runs)."""
    for leftover in home.parent.glob(f"{STAGING_PREFIX}{home.name}.*"):
        pid = leftover.name.rsplit(".", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(leftover, ignore_errors=True)


def _build(instance: Instance, scenario: Path | None, max_cycles: int | None, model: str | None) -> None:
    instance.home.mkdir()
    done = subprocess.run(
        ["git", "init", "--quiet", "--bare", "--initial-branch=main", str(instance.repo)],
        env=safe_env(),
        capture_output=True,
    )
    if done.returncode != 0:
        raise ConfigError(f"git init failed: {done.stderr.decode(errors='replace').strip()}")
    with tempfile.TemporaryDirectory(prefix="ouroboros-init-") as scratch:
        tree = Path(scratch) / "tree"
        _lay_out_agent_repo(tree)
        _first_commit(Git(instance.repo), tree, Path(scratch))
        _seed_memory(instance, tree)
    scenario_line = (
        f"scripted_scenario = {json.dumps(str(scenario))}\n"
        if scenario
        else ('# scripted_scenario = "scenario.json"   # serve the agent from a scripted model (no API key)\n')
    )
    agent_lines = (
        f"max_cycles = {max_cycles}\n"
        if max_cycles
        else "# max_cycles = 10          # cycles per agent run; unset: run forever\n"
    )
    agent_lines += f'model = "{model}"\n' if model else '# model = "claude-sonnet-5-5"\n'
    instance.config_path.write_text(CONFIG_TEMPLATE.format(scenario_line=scenario_line, agent_lines=agent_lines))


def _lay_out_agent_repo(tree: Path) -> None:
    for name in PACKAGES:
        shutil.copytree(package_dir(name), tree / name, ignore=SKIP)
    for folder in MEMORY_FOLDERS:
        # Memory lives outside the repository; the folders stay as mount points.
        shutil.rmtree(tree / "agent" / folder, ignore_errors=True)
        (tree / "agent" / folder).mkdir()
        (tree / "agent" / folder / ".gitkeep").touch()
    # Task outputs (files a goal asks for) land here; the gate refuses new top-level entries.
    (tree / "reports").mkdir()
    (tree / "reports" / "README.md").write_text("Files the agent produces while working on its goals.\n")
    (tree / "gate.toml").write_text(AGENT_GATE_TOML)
    (tree / ".gitignore").write_text(AGENT_GITIGNORE)


def _first_commit(git: Git, tree: Path, scratch: Path) -> str:
    index = scratch / "index"
    git.run("add", "-A", ".", work_tree=tree, index_file=index)
    tree_id = git.out("write-tree", index_file=index)
    commit = git.commit_tree(tree_id, [], "Generation 0: the packaged Ouroboros agent\n")
    git.update_ref(MAIN_REF, commit, ZERO, "ouroboros: init")
    return commit


def _seed_memory(instance: Instance, tree: Path) -> None:
    packaged_goals = package_dir("agent") / "goals"
    instance.journal.mkdir(parents=True, exist_ok=True)
    shutil.copytree(packaged_goals, instance.goals, ignore=SKIP, dirs_exist_ok=True)


__all__ = ["init_instance", "CONFIG_NAME"]
