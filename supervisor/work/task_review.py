"""Why a task result must wait for a person: what its diff touches, what the snapshot refused.

A result is flagged (`needs_review`, never delivered automatically) when its diff from the base
touches a test path or test machinery (the judge's own rule, `task_tests.is_task_test_path`: added
files count too) or code the tests lean on outside test folders (`task_tests.is_test_support`:
`numpy/testing`, `pandas/_testing`, `sklearn/utils/_testing.py`), changes pytest's or coverage's sections of `pyproject.toml` (not read by the
judged run, but the project's own CI reads them), trips the gate's tamper screen
(`supervisor/gate/tamper.py`: pytest internals, `atexit`, `os._exit`, `sys.modules`, ... on an
added line), holds a symlink that resolves outside the tree, or when the work-area snapshot refused
entries. The reasons name paths and kinds of hit only.
"""

from __future__ import annotations

import tomllib
from typing import Any

from supervisor.base.git_ops import Git
from supervisor.base.text import printable
from supervisor.gate.tamper import tamper_hits
from supervisor.work.task_tests import is_task_test_path, is_test_support

MAX_LISTED = 20
PYPROJECT_TEST_TABLES = ("pytest", "coverage", "tox", "hatch")
MAX_PYPROJECT_BYTES = 1_000_000


def review_reasons(git: Git, base: str, result: str, patch_paths: frozenset[str], refused: list[str]) -> list[str]:
    """Every reason `result` needs review; empty when it may be delivered on a pass."""
    changes = git.changed_paths(base, result)
    reasons = []
    tests = [printable(path) for _, path in changes if is_task_test_path(path, patch_paths)]
    if tests:
        reasons.append(f"changes tests or test machinery ({len(tests)}): " + ", ".join(tests[:MAX_LISTED]))
    support = [printable(p) for _, p in changes if is_test_support(p) and not is_task_test_path(p, patch_paths)]
    if support:
        reasons.append(f"changes code the tests lean on ({len(support)}): " + ", ".join(support[:MAX_LISTED]))
    pyprojects = [path for status, path in changes if path.rsplit("/", 1)[-1] == "pyproject.toml"]
    changed_sections = [printable(path) for path in pyprojects if _test_sections_differ(git, base, result, path)]
    if changed_sections:
        reasons.append("changes the test configuration in " + ", ".join(changed_sections[:MAX_LISTED]))
    tamper = tamper_hits(git, base, result, changes)
    if tamper:
        reasons.append("touches pytest or Python start-up machinery: " + "; ".join(tamper[:MAX_LISTED]))
    escaping = git.escaping_links(result)
    if escaping:
        reasons.append("symlinks resolve outside the tree: " + "; ".join(printable(e) for e in escaping[:MAX_LISTED]))
    if refused:
        reasons.append(f"the work-area snapshot refused {len(refused)} entries: " + "; ".join(refused[:MAX_LISTED]))
    return reasons


def _test_sections_differ(git: Git, base: str, result: str, path: str) -> bool:
    return _test_sections(git.read_blob(base, path)) != _test_sections(git.read_blob(result, path))


def _test_sections(data: bytes | None) -> dict[str, Any] | None:
    """`[tool.pytest*]`-like tables of a pyproject.toml; unreadable counts as its own value."""
    if data is None:
        return {}
    if len(data) > MAX_PYPROJECT_BYTES:
        return None
    try:
        tool = tomllib.loads(data.decode("utf-8")).get("tool", {})
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
        return None
    if not isinstance(tool, dict):
        return None
    return {name: tool.get(name) for name in PYPROJECT_TEST_TABLES}
