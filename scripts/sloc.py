"""Count source lines of the trusted core and of the rest, per package (docs/architecture.md).

    python scripts/sloc.py

A source line is a line that holds Python tokens other than comments and is not part of a
docstring (module, class or function). Blank lines, comment lines and docstrings do not count.
"""

from __future__ import annotations

import ast
import io
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The code that can move `main`, hold the API key or drive Docker, then what only presents it.
GROUPS: dict[str, list[str]] = {
    "trusted core": [
        "supervisor/gate",
        "supervisor/loop",
        "supervisor/store",
        "supervisor/route",
        "supervisor/base",
        "sandbox",
    ],
    "presentation": ["supervisor/cli", "supervisor/console", "supervisor/__init__.py", "supervisor/__main__.py"],
    "agent (untrusted, for scale)": ["agent"],
}
NOT_CODE = {
    tokenize.COMMENT,
    tokenize.NL,
    tokenize.NEWLINE,
    tokenize.INDENT,
    tokenize.DEDENT,
    tokenize.ENCODING,
    tokenize.ENDMARKER,
}


def docstring_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                if isinstance(first.value.value, str):
                    lines.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return lines


def sloc(source: str) -> int:
    code: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in NOT_CODE:
            code.update(range(token.start[0], token.end[0] + 1))
    return len(code - docstring_lines(ast.parse(source)))


def files(entry: str) -> list[Path]:
    path = ROOT / entry
    if path.is_file():
        return [path]
    # the agent's own tests are part of what it rewrites, but not code the supervisor runs
    return sorted(p for p in path.rglob("*.py") if "tests" not in p.relative_to(path).parts)


def main() -> None:
    rows: list[tuple[str, str, int, int]] = []
    for group, entries in GROUPS.items():
        for entry in entries:
            found = files(entry)
            rows.append((group, entry, len(found), sum(sloc(p.read_text()) for p in found)))
    width = max(len(entry) for _, entry, _, _ in rows)
    out = sys.stdout
    out.write(f"| {'package':<{width}} | modules |  SLOC |\n| {'-' * width} | ------: | ----: |\n")
    for group in GROUPS:
        mine = [row for row in rows if row[0] == group]
        for _, entry, modules, count in mine:
            out.write(f"| {entry:<{width}} | {modules:>7} | {count:>5} |\n")
        label = f"**{group}**"
        out.write(f"| {label:<{width}} | {sum(r[2] for r in mine):>7} | {sum(r[3] for r in mine):>5} |\n")


if __name__ == "__main__":
    main()
