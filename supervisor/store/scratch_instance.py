"""A scratch instance pinned to one generation of a live instance: where `supervisor task bench` runs.

Made like `supervisor init` makes one (a bare agent repository, the packaged goals as memory, the
config file), except that nothing is copied: its repository borrows the live repository's objects
(`objects/info/alternates`, what `git clone --shared` sets up) and holds only `main` at the live
`gen/N` and the tags `gen/0` .. `gen/N` (so the agent's /history shows no later generation); each
project the bench needs is a mirror borrowing the live mirror's objects, with the live mirror's
branches and tags and the live project.toml. Nothing of the live instance is written: its refs are
read, its objects are borrowed. New objects (task results) are written in the scratch only.

Atomic like `init`: built in a hidden sibling and renamed into place, so a failure leaves nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from supervisor.base.errors import ConfigError
from supervisor.base.git_ops import GEN_TAG_PREFIX, MAIN_REF, Git, safe_env
from supervisor.store.instance import ContributeSettings, Instance, InstanceConfig, NotifySettings
from supervisor.store.instance_init import SKIP, package_dir
from supervisor.store.projects import ProjectRegistry

STAGING_PREFIX = ".ouroboros-scratch-"
HEADER = (
    "# A `supervisor task bench` scratch instance, pinned to generation {generation} of {live}.\n"
    '# The live instance\'s settings (the model route above all), except: [agent] proposals = "drop"\n'
    "# (main never moves), max_cycles unset (the agent runs until every task has a verdict), nothing\n"
    '# delivered ([contribute] left at its defaults: auto = "never") and no notifications.\n\n'
)
BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def scratch_config(live: InstanceConfig) -> InstanceConfig:
    """The live config as the scratch runs it: generation pinned, nothing delivered or announced."""
    agent = live.agent.model_copy(update={"proposals": "drop", "max_cycles": None})
    return live.model_copy(update={"agent": agent, "contribute": ContributeSettings(), "notify": NotifySettings()})


def config_toml(config: InstanceConfig) -> str:
    """`config` as an ouroboros.toml (the fields that differ from the defaults); checked to read back equal."""
    text = _toml(config.model_dump(mode="json", exclude_defaults=True), ())
    if InstanceConfig.model_validate(tomllib.loads(text)) != config:
        raise ConfigError("the scratch instance's config did not read back as written; report this as a bug")
    return text


def _toml(data: dict[str, Any], prefix: tuple[str, ...]) -> str:
    scalars = [(key, value) for key, value in data.items() if not isinstance(value, dict) and value is not None]
    tables = [(key, value) for key, value in data.items() if isinstance(value, dict)]
    lines = [f"[{'.'.join(_key(part) for part in prefix)}]"] if prefix and scalars else []
    lines += [f"{_key(key)} = {_value(value)}" for key, value in scalars]
    text = "\n".join(lines) + ("\n\n" if lines else "")
    return text + "".join(_toml(value, (*prefix, key)) for key, value in tables)


def _key(key: str) -> str:
    return key if BARE_KEY.match(key) else _value(key)


def _value(item: object) -> str:
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, int | float):
        return repr(item)
    if isinstance(item, list):
        return "[" + ", ".join(_value(x) for x in item) + "]"
    if isinstance(item, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in item.items() if v is not None) + "}"
    return json.dumps(str(item)).replace("\x7f", "\\u007f")  # a JSON string is a TOML basic string


def generations(live: Instance) -> dict[int, str]:
    """The live repository's generations: number -> commit (its `gen/N` tags)."""
    found = {}
    for ref, commit in Git(live.repo).refs(GEN_TAG_PREFIX).items():
        number = ref.removeprefix(GEN_TAG_PREFIX)
        if number.isdigit():
            found[int(number)] = commit
    return found


def generation_commit(live: Instance, generation: int) -> str:
    """The commit of `gen/<generation>` in the live repository; a ConfigError naming the known ones."""
    known = generations(live)
    if generation not in known:
        shown = ", ".join(str(n) for n in sorted(known)[-20:]) or "none yet"
        raise ConfigError(
            f"generation {generation} is not a generation of {live.home} (it has: {shown}); "
            "`supervisor scorecard` lists them"
        )
    return known[generation]


def make_scratch(home: Path, live: Instance, generation: int, projects: Iterable[str]) -> Instance:
    """A new instance in `home` (absent or empty) running `generation` of `live`, with `projects`;
    its config is `scratch_config` of the live one."""
    commit = generation_commit(live, generation)
    config = config_toml(scratch_config(live.config()))
    home = home.resolve()
    if home.exists() and (not home.is_dir() or any(home.iterdir())):
        raise ConfigError(f"{home} exists and is not an empty directory; choose a new directory for the scratch")
    home.parent.mkdir(parents=True, exist_ok=True)
    staging = home.parent / f"{STAGING_PREFIX}{home.name}.{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        scratch = Instance(staging)
        staging.mkdir()
        tags = {n: c for n, c in generations(live).items() if n <= generation}
        _pinned_repo(scratch.repo, live.repo, commit, tags)
        for name in sorted(set(projects)):
            _shared_project(ProjectRegistry(live.projects), ProjectRegistry(scratch.projects), name)
        scratch.journal.mkdir(parents=True)
        shutil.copytree(package_dir("agent") / "goals", scratch.goals, ignore=SKIP)
        scratch.config_path.write_text(HEADER.format(generation=generation, live=live.home) + config, encoding="utf-8")
        os.rename(staging, home)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Instance(home)


def _init_bare(path: Path, branch: str) -> Git:
    """An empty bare repository with no template (no sample hooks)."""
    done = subprocess.run(
        ["git", "init", "--bare", "--quiet", "--template=", f"--initial-branch={branch}", str(path)],
        env=safe_env(),
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise ConfigError(f"could not make a repository at {path}: {done.stderr.decode(errors='replace').strip()}")
    return Git(path)


def _borrow_objects(git: Git, source: Path) -> None:
    """Read `source`'s objects in place (git's alternates), never copying or writing them."""
    info = git.git_dir / "objects" / "info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "alternates").write_text(str(source.resolve() / "objects") + "\n")


def _set_refs(git: Git, refs: dict[str, str]) -> None:
    """Create every ref in one `git update-ref --stdin` transaction (a mirror may have thousands)."""
    if refs:
        lines = "".join(f"create {ref} {value}\n" for ref, value in sorted(refs.items()))
        git.run("update-ref", "--stdin", input=lines.encode())


def _pinned_repo(path: Path, live_repo: Path, commit: str, tags: dict[int, str]) -> None:
    git = _init_bare(path, "main")
    _borrow_objects(git, live_repo)
    _set_refs(git, {MAIN_REF: commit} | {f"{GEN_TAG_PREFIX}{n}": c for n, c in tags.items()})


def _shared_project(live: ProjectRegistry, scratch: ProjectRegistry, name: str) -> None:
    config = live.get(name)
    source = live.mirror(name)
    git = _init_bare(scratch.mirror(name), config.default_branch)
    _borrow_objects(git, source)
    _set_refs(git, Git(source).refs("refs/heads/", "refs/tags/"))
    scratch.save(config)
