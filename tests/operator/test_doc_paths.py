"""Every path and dotted name the docs cite exists in the code, so the docs cannot drift from it.

Checked in README.md, CONTRIBUTING.md and docs/*.md: paths under supervisor/, sandbox/, tests/
(and the other top-level folders of the project), with globs matching something and `::test_name`
naming a test in that file; a bare `name.py` is a file of the project; dotted names
`supervisor.x.y` / `sandbox.x.y` importable down to their last attribute. And
docs/architecture.md names every package of `supervisor/`.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
FOLDERS = "supervisor|sandbox|tests|scripted_model|scripts|agent_image|packaging|bench"
PATH = re.compile(rf"(?<![\w./@-])((?:{FOLDERS})/[\w./*@-]*)(::[\w*]+)?")
DOTTED = re.compile(r"(?<![\w./-])((?:supervisor|sandbox)(?:\.[A-Za-z_]\w*){2,})")
# Paths that exist only in a built wheel, not in a checkout.
BUILT = {"sandbox/image_context/"}
MODULE_NAME = re.compile(r"`([a-z_][a-z0-9_]*\.py)`")
# Module names the docs cite as things a hostile tree may contain, not as files of this project.
FOREIGN = {"sitecustomize.py", "usercustomize.py", "pytest.py"}


def _citations(pattern: re.Pattern[str]) -> list[tuple[str, re.Match[str]]]:
    return [(doc.name, match) for doc in DOCS for match in pattern.finditer(doc.read_text())]


def _path_problem(path: str, test_name: str | None) -> str | None:
    if "<" in path or path in BUILT:  # a placeholder such as tests/<area>/
        return None
    matches = sorted(ROOT.glob(path.rstrip("/"))) if "*" in path else [ROOT / path]
    if not matches or not matches[0].exists():
        return "no such file or folder"
    if test_name is not None:
        name = re.escape(test_name.lstrip(":")).replace(r"\*", r"\w*")
        if not re.search(rf"^(async )?def {name}\(", matches[0].read_text(), re.MULTILINE):
            return f"no test {test_name.lstrip(':')} in it"
    return None


def _dotted_problem(dotted: str) -> str | None:
    parts = dotted.split(".")
    for cut in range(len(parts), 1, -1):
        module = ".".join(parts[:cut])
        try:
            target: object = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and not module.startswith(exc.name):
                return None  # a third-party package this environment lacks (the gate's image): checked on the host
            continue
        for attribute in parts[cut:]:
            if not hasattr(target, attribute):
                return f"{'.'.join(parts[:cut])} has no {'.'.join(parts[cut:])}"
            target = getattr(target, attribute)
        return None
    return "no such module"


def test_the_checks_find_what_is_missing() -> None:
    assert _path_problem("supervisor/gate/passes.py", None) is None
    assert _path_problem("supervisor/gate.py", None) == "no such file or folder"
    assert _path_problem("tests/gate/test_property_main_only_gated.py", None) == "no such file or folder"
    assert _path_problem("tests/sandbox/test_hardening.py", "::test_reconcile_*") is None
    assert _path_problem("tests/sandbox/test_hardening.py", "::test_never_written") is not None
    assert _path_problem("supervisor/cli/*_cmds.py", None) is None
    assert _dotted_problem("supervisor.gate.rollback.passed_commits") is None
    assert _dotted_problem("supervisor.gate.gatekeeper.Gatekeeper.passed_commits") is not None
    assert _dotted_problem("supervisor.gatekeeper.Gatekeeper") == "no such module"


def test_the_docs_cite_many_paths_and_names() -> None:
    assert len(_citations(PATH)) > 100 and len(_citations(DOTTED)) >= 5


@pytest.mark.parametrize("doc", [doc.name for doc in DOCS])
def test_every_cited_path_exists(doc: str) -> None:
    problems = [
        f"{name}: {match.group(0)}: {problem}"
        for name, match in _citations(PATH)
        if name == doc and (problem := _path_problem(match.group(1).rstrip("."), match.group(2)))
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("doc", [doc.name for doc in DOCS])
def test_every_cited_module_and_function_exists(doc: str) -> None:
    problems = [
        f"{name}: {match.group(1)}: {problem}"
        for name, match in _citations(DOTTED)
        if name == doc and (problem := _dotted_problem(match.group(1)))
    ]
    assert not problems, "\n".join(problems)


def test_every_module_named_alone_exists_somewhere() -> None:
    """A bare `name.py` (as in the tables of docs/architecture.md) is a file of the project."""
    known = {path.name for folder in FOLDERS.split("|") for path in (ROOT / folder).rglob("*.py")}
    known |= {path.name for path in ROOT.glob("*.py")} | {path.name for path in (ROOT / "agent").rglob("*.py")}
    cited = {(doc.name, name) for doc in DOCS for name in MODULE_NAME.findall(doc.read_text())}
    assert len(cited) > 20
    assert not sorted((doc, name) for doc, name in cited if name not in known | FOREIGN)


def test_the_architecture_names_every_package_of_the_supervisor() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    packages = sorted(p.parent.name for p in (ROOT / "supervisor").glob("*/__init__.py"))
    assert len(packages) >= 7
    assert not [name for name in packages if f"supervisor/{name}" not in text]
