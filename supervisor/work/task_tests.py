"""What a task's verdict is made of: which paths are tests, test ids, outcomes, the base's cache.

No git and no containers here: pure rules and one cache file, so the verdict computation is tested
fast and on its own (tests/tasks/test_task_judge_unit.py).

A path is *test* (taken from the tests commit, never from the agent's result, and a diff touching
it needs review) when any folder on it is named `tests` (or it is such a folder, replaced by a
file or link), when the gate's `is_test_machinery` says so (`test_*.py`, `*_test.py`, conftest.py,
pytest.ini, pytest.toml, .pytest.ini, .pytest.toml, tox.ini, setup.cfg, sitecustomize.py,
usercustomize.py, `*.pth`, `*.dist-info`/`*.egg-info`/`*.egg-link` anywhere), or when the hidden
test patch touches it.

A path is *test support* (`is_test_support`: the agent's in the judged tree, but a diff touching it
needs review) when a part of it names testing on its own: `testing/`, `_testing.py`, `test_utils.py`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from supervisor.base.safe_fs import read_file
from supervisor.gate.config import is_test_machinery
from supervisor.gate.junit import Outcome
from supervisor.store.tasks.models import TestOutcomes

TEST_FOLDERS = frozenset({"tests"})
MAX_CACHE_BYTES = 20_000_000
CACHE_VERSION = 1


def is_task_test_path(path: str, patch_paths: frozenset[str] = frozenset()) -> bool:
    """A path whose content is the tests commit's in the judged tree (see the module docstring)."""
    if path in patch_paths or not TEST_FOLDERS.isdisjoint(path.split("/")):
        return True
    return is_test_machinery(path)


# A name part that says "test support": `testing/`, `_testing.py`, `test_utils.py`, `testutils/`,
# `django/test/`, `helpers_test/`... (`pytest`, `latest`, `contest` are not: the word must stand alone).
_TEST_SUPPORT = re.compile(r"(?:^|[_.-])(?:tests?|testing|testutils?)(?:$|[_.-])", re.IGNORECASE)


def is_test_support(path: str) -> bool:
    """Code the tests lean on that lives outside test folders (`numpy/testing`, `pandas/_testing`,
    `sklearn/utils/_testing.py`): the agent's in the judged tree (the project ships it as code), but a
    diff touching it can make the project's assertions vacuous, so it needs review."""
    return any(_TEST_SUPPORT.search(part) for part in path.split("/"))


def junit_id(test_id: str) -> str:
    """A test id as the JUnit report spells it: `pkg/test_x.py::Cls::test_y[a]` → `pkg.test_x.Cls::test_y[a]`.

    SWE-bench lists pytest node ids; pytest's report keys a test by its class name (the module's dotted
    path, then any classes) and its name. Ids already in that form are returned unchanged.
    """
    head, bracket, params = test_id.partition("[")
    parts = head.split("::")
    if len(parts) < 2 or not parts[0].endswith(".py"):
        return test_id
    module = parts[0][: -len(".py")].replace("/", ".")
    return ".".join([module, *parts[1:-1]]) + "::" + parts[-1] + bracket + params


def compute_outcomes(
    base: dict[str, str], after: dict[str, str], fail_to_pass: list[str], pass_to_pass: list[str] | None
) -> TestOutcomes:
    """The verdict's lists from the base's and the result's outcomes (test id → outcome).

    Every FAIL_TO_PASS test must pass after (one that already passed on the base is fine if it still
    passes). A regression is a PASS_TO_PASS test (all tests, when the task names none) that passed on
    the base and does not pass after (failed, skipped or gone). A listed PASS_TO_PASS test that did
    not pass on the base is not checked: the base cannot show it working.
    """
    outcomes = TestOutcomes()
    f2p_ids = set()
    for test_id in dict.fromkeys(fail_to_pass):
        key = junit_id(test_id)
        f2p_ids.add(key)
        target = outcomes.fail_to_pass_passed if after.get(key) == "passed" else outcomes.fail_to_pass_failed
        target.append(test_id)
    candidates = list(base) if pass_to_pass is None else list(dict.fromkeys(pass_to_pass))
    for test_id in candidates:
        key = junit_id(test_id)
        if key in f2p_ids or base.get(key) != "passed":
            continue
        outcomes.pass_to_pass_checked += 1
        if after.get(key) != "passed":
            outcomes.regressions.append(test_id)
    return outcomes


def is_pass(outcomes: TestOutcomes) -> bool:
    return not outcomes.fail_to_pass_failed and not outcomes.regressions


def describe(outcomes: TestOutcomes) -> str:
    """One line for the verdict's reason (ids only: the hidden tests' source never leaves the judge)."""
    if is_pass(outcomes):
        return (
            f"every FAIL_TO_PASS test passes ({len(outcomes.fail_to_pass_passed)}) and none of "
            f"{outcomes.pass_to_pass_checked} tests that passed on the base regressed"
        )
    parts = []
    if outcomes.fail_to_pass_failed:
        parts.append("FAIL_TO_PASS not passing: " + ", ".join(outcomes.fail_to_pass_failed[:20]))
    if outcomes.regressions:
        parts.append("regressions: " + ", ".join(outcomes.regressions[:20]))
    return "; ".join(parts)


# -- the base's outcomes, cached per (base commit, test patch) ------------------------------------


class BaseOutcomes(BaseModel):
    """A cache file: the outcomes of the base's tests with the test patch applied."""

    model_config = ConfigDict(extra="forbid")

    version: int = CACHE_VERSION
    base_commit: str
    patch_sha256: str
    settings: str = Field(description="What else the outcomes depend on (command, image), as a digest.")
    tests: dict[str, Outcome] = Field(min_length=1)


def patch_bytes(test_patch: str) -> bytes:
    """The patch as git reads it (bytes that were not UTF-8 come back as they were read)."""
    try:
        return test_patch.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return test_patch.encode("utf-8", "surrogatepass")


def patch_digest(test_patch: str) -> str:
    return hashlib.sha256(patch_bytes(test_patch)).hexdigest()


def cache_file(cache: Path, base_commit: str, test_patch: str) -> Path:
    return cache / f"base-{base_commit}-{patch_digest(test_patch)}.json"


def settings_digest(command: list[str], image: str) -> str:
    """The run settings a cached outcome is valid for: another command or image runs the base again."""
    return hashlib.sha256(json.dumps([command, image]).encode()).hexdigest()


def load_base_outcomes(cache: Path, base_commit: str, test_patch: str, settings: str) -> dict[str, str] | None:
    """The cached outcomes, or None if there are none or the file is not one we wrote (read with care)."""
    path = cache_file(cache, base_commit, test_patch)
    try:
        data = read_file(path, MAX_CACHE_BYTES).data
        record = BaseOutcomes.model_validate_json(data)
    except (OSError, ValueError, ValidationError):
        return None
    if (record.version, record.base_commit, record.patch_sha256, record.settings) != (
        CACHE_VERSION,
        base_commit,
        patch_digest(test_patch),
        settings,
    ):
        return None
    return dict(record.tests)


def save_base_outcomes(
    cache: Path, base_commit: str, test_patch: str, settings: str, tests: dict[str, Outcome]
) -> None:
    """Write the cache file atomically (a kill leaves the old file, the new one, or none)."""
    record = BaseOutcomes(
        base_commit=base_commit, patch_sha256=patch_digest(test_patch), settings=settings, tests=tests
    )
    cache.mkdir(parents=True, exist_ok=True)
    target = cache_file(cache, base_commit, test_patch)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(json.dumps(record.model_dump(mode="json")), encoding="utf-8")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
