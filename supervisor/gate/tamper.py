"""The tamper screen: a diff that reaches into pytest's or Python's machinery waits for approval.

Defence in depth, not the judge: code under test runs inside the test process, so it can patch
pytest (`TestReport.from_item_and_call`, `CallInfo.from_call`, the junitxml plugin), register
`atexit` hooks, call `os._exit(0)`, replace modules in `sys.modules` or `builtins`, or plant a
`*.pth`, `*.dist-info` or `sitecustomize.py`. Honest agent code has no reason to touch any of that,
so such a diff is never accepted automatically: `supervisor show` lists each hit with its line.

Only lines the candidate *adds* (present in its file, absent from the base's) are screened, so
code already on `main` does not flag every later proposal. A determined hostile agent can spell
these names so no pattern matches (`getattr(__import__("o" + "s"), ...)`); the structural answer
is the held-out acceptance stage, which judges outside the candidate's process (docs/security.md).
"""

from __future__ import annotations

import re

from supervisor.base.git_ops import Git
from supervisor.gate.config import MACHINERY_FOLDER_SUFFIXES, MACHINERY_NAMES, MACHINERY_SUFFIXES

MAX_HITS = 50

PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("pytest internals (_pytest)", re.compile(r"\b_pytest\b")),
    (
        "pytest's report machinery",
        re.compile(
            r"\b(TestReport|CollectReport|CallInfo|from_item_and_call|from_call"
            r"|LogXML|junitxml|runtestprotocol|call_and_report|runtest)\b"
        ),
    ),
    ("an assignment into pytest", re.compile(r"\bpytest(\s*\.\s*\w+)+\s*=(?!=)|setattr\(\s*pytest\b")),
    ("interpreter hooks", re.compile(r"\bsys\s*\.\s*(settrace|setprofile|addaudithook|_getframe|excepthook)\b")),
    ("pytest_plugins", re.compile(r"\bpytest_plugins\b")),
    ("a pytest hook implementation", re.compile(r"\bdef\s+pytest_\w+|\bhookimpl\b|\bpluggy\b")),
    ("sys.modules patching", re.compile(r"\bsys\s*\.\s*modules\b")),
    ("builtins patching", re.compile(r"\b__builtins__\b|\bbuiltins\b")),
    ("os._exit", re.compile(r"\b_exit\b")),
    ("atexit", re.compile(r"\batexit\b")),
    ("sitecustomize/usercustomize", re.compile(r"\b(site|user)customize\b")),
    ("a .pth start-up file", re.compile(r"\.pth\b")),
    ("a .dist-info entry point", re.compile(r"\.dist-info\b|\bentry_points\b")),
]


def machinery_path(path: str) -> str | None:
    """Why a file's mere presence steers Python or pytest start-up, or None."""
    parts = path.split("/")
    if parts[-1] in MACHINERY_NAMES:
        return f"{parts[-1]} configures pytest or Python start-up"
    if parts[-1].endswith(MACHINERY_SUFFIXES):
        return "a .pth file runs code when Python starts"
    if any(part.endswith(MACHINERY_FOLDER_SUFFIXES) for part in parts):
        return "package metadata can register pytest plugins and entry points"
    return None


def added_lines(old: bytes | None, new: bytes) -> list[tuple[int, str]]:
    """(line number, text) of the lines of `new` that `old` does not have."""
    before = set((old or b"").decode("utf-8", "replace").splitlines())
    return [
        (number, line)
        for number, line in enumerate(new.decode("utf-8", "replace").splitlines(), 1)
        if line not in before
    ]


def screen_file(path: str, old: bytes | None, new: bytes) -> list[str]:
    hits = []
    why = machinery_path(path)
    if why:
        hits.append(f"{path}: {why}")
    seen: set[str] = set()
    for number, line in added_lines(old, new):
        for label, pattern in PATTERNS:
            if label not in seen and pattern.search(line):
                seen.add(label)
                hits.append(f"{path}:{number}: {label}")
    return hits


def tamper_hits(git: Git, base: str, commit: str, changes: list[tuple[str, str]]) -> list[str]:
    """Every added or changed file of base→commit screened; one line per (file, kind of hit)."""
    touched = [path for status, path in changes if status != "D"]
    if not touched:
        return []
    old_entries = {e.path: e.sha for e in git.ls_tree(base) if e.kind == "blob"}
    new_entries = {e.path: e.sha for e in git.ls_tree(commit) if e.kind == "blob"}
    paths = [path for path in touched if path in new_entries]
    blobs = git.read_blobs([new_entries[p] for p in paths] + [old_entries[p] for p in paths if p in old_entries])
    hits: list[str] = []
    for path in paths:
        old = blobs.get(old_entries[path]) if path in old_entries else None
        hits += screen_file(path, old, blobs[new_entries[path]])
        if len(hits) >= MAX_HITS:
            break
    return hits[:MAX_HITS]
