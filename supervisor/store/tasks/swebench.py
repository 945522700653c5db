"""Read a JSONL file of SWE-bench-style instances into new tasks, every bad line named with what to fix.

One JSON object per line (blank lines are skipped) with:
  instance_id        the instance's own id (kept as the task's external_id; unique per project)
  repo               resolved to a registered project (`project_resolver` states the rule)
  base_commit        40 hex digits, the commit the task starts from
  problem_statement  what the agent reads (the task's body)
  FAIL_TO_PASS       tests that must fail on the base and pass after: a list of strings, or a
  PASS_TO_PASS       JSON-encoded string of one (SWE-bench stores them so); PASS_TO_PASS must keep passing
  test_patch         the hidden tests, applied only when judging (the agent never sees it)
  priority, title    optional; the title defaults to the first line of the problem statement
Other keys (SWE-bench's `patch`, the reference fix, among them) are ignored: nothing but the
fields above reaches the queue, so the agent is never handed the answer.

The file is third-party data: a line that is not UTF-8, not JSON, not an object, over 4 MB, or
misses a field is an error naming its line number; `read_instances` reads every line and returns
the good tasks and the errors, and the caller queues all or none (or, asked to, the good ones);
`read_instance_chunks` gives the same a chunk of lines at a time, for a file too large to hold.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import ValidationError

from supervisor.store.projects import ProjectConfig
from supervisor.store.tasks.models import MAX_TITLE, NewTask, TaskError

MAX_LINE = 4 * 1024 * 1024
REQUIRED = ("instance_id", "repo", "base_commit", "problem_statement", "FAIL_TO_PASS", "PASS_TO_PASS", "test_patch")
HEX40 = re.compile(r"^[0-9a-fA-F]{40}$")
# NewTask's fields by the names the file uses, so a validation error names what the line holds.
FILE_NAMES = {
    "project": "repo",
    "body": "problem_statement",
    "fail_to_pass": "FAIL_TO_PASS",
    "pass_to_pass": "PASS_TO_PASS",
    "external_id": "instance_id",
}

Resolver = Callable[[str], str | None]  # a project name, None for none; TaskError says why none fits


@dataclass(frozen=True)
class LineError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


HINT_KEYS = ("health", "impact", "solvability", "urgency", "labels", "created_at", "language")


@dataclass(frozen=True)
class ImportedTask:
    line: int
    task: NewTask
    hints: dict[str, Any] = field(default_factory=dict)  # the line's HINT_KEYS, unchecked (the fleet checks them)


@dataclass
class ImportBatch:
    """What a file held: the good lines as tasks, the bad ones as errors (both in line order)."""

    tasks: list[ImportedTask] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)


class BadLine(Exception):
    """One line's problem (internal: becomes a LineError with its number)."""


def project_resolver(projects: Iterable[ProjectConfig]) -> Resolver:
    """The rule that maps an instance's `repo` (e.g. `astropy/astropy`) to a project name.

    In order, the first rule that matches exactly one project wins:
    1. a project whose name is `repo` itself;
    2. a project named `owner__name` (SWE-bench's own spelling, lower-case: `astropy__astropy`);
    3. a project whose source (URL or path, case-insensitive, trailing `/` ignored) ends with
       `/repo`, `/repo.git`, `:repo` or `:repo.git`.
    A `repo` that two projects match by the same rule is a TaskError (keep one project per repo).
    """
    known = list(projects)

    def resolve(repo: str) -> str | None:
        wanted = repo.strip().strip("/").lower()
        if not wanted:
            return None
        rules: list[Callable[[ProjectConfig], bool]] = [
            lambda p: p.name == wanted,
            lambda p: p.name == wanted.replace("/", "__"),
            lambda p: _source_ends_with(p.source, wanted),
        ]
        for rule in rules:
            matches = sorted(p.name for p in known if rule(p))
            if len(matches) > 1:
                raise TaskError(f"repo {repo!r} matches projects {', '.join(matches)}; keep one project per repository")
            if matches:
                return matches[0]
        return None

    return resolve


def _source_ends_with(source: str, repo: str) -> bool:
    tail = source.strip().rstrip("/").lower()
    return any(tail.endswith(sep + repo + ext) for sep in ("/", ":") for ext in ("", ".git"))


def read_instances(path: Path, resolve_project: Resolver, *, source: str | None = None) -> ImportBatch:
    """Every line of `path`; TaskError only when the file itself cannot be read."""
    batch = ImportBatch()
    for found in iter_instances(path, resolve_project, source=source):
        if isinstance(found, LineError):
            batch.errors.append(found)
        else:
            batch.tasks.append(found)
    return batch


def read_instance_chunks(
    path: Path, resolve_project: Resolver, *, source: str | None = None, lines: int = 1000
) -> Iterator[ImportBatch]:
    """`read_instances` a chunk at a time: each batch holds what `lines` consecutive lines gave (the
    last may hold fewer), so a large file is never held whole; a repeat is still found across chunks."""
    batch, first, last = ImportBatch(), 0, 0
    for found in iter_instances(path, resolve_project, source=source):
        last = found.line
        if not first:
            first = last
        elif last - first >= lines:
            yield batch
            batch, first = ImportBatch(), last
        if isinstance(found, LineError):
            batch.errors.append(found)
        else:
            batch.tasks.append(found)
    if batch.tasks or batch.errors:
        yield batch


def iter_instances(
    path: Path, resolve_project: Resolver, *, source: str | None = None
) -> Iterator[ImportedTask | LineError]:
    """Each line of `path` as a task or an error, in line order (blank lines give nothing); only the
    (project, instance_id) keys seen so far are kept. TaskError when the file itself cannot be read."""
    origin = (source or f"import {path.name}")[:200]
    first_line: dict[tuple[str, str], int] = {}
    with _open_regular(path) as handle:
        for number, raw in _lines(handle):
            try:
                if raw is None:
                    raise BadLine(f"longer than {MAX_LINE} bytes; split or shorten the instance")
                if not raw.strip():
                    continue
                task, hints = parse_line(raw, resolve_project, origin)
            except BadLine as exc:
                yield LineError(number, str(exc))
                continue
            key = (task.project, task.external_id or "")
            if key in first_line:
                yield LineError(number, f"instance {key[1]!r} repeats line {first_line[key]}; keep one of them")
                continue
            first_line[key] = number
            yield ImportedTask(number, task, hints)


def _open_regular(path: Path) -> BinaryIO:
    """The file for reading; a FIFO, device or folder is refused instead of blocking or failing late."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise TaskError(f"cannot read {path}: {exc.strerror}; give a JSONL file") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise TaskError(f"{path} is not a regular file; give a JSONL file")
    return os.fdopen(fd, "rb")


def _lines(handle: BinaryIO) -> Iterator[tuple[int, bytes | None]]:
    """(number, bytes) per line, counting from 1; None for a line over MAX_LINE (never held whole)."""
    number = 0
    while True:
        raw = handle.readline(MAX_LINE + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):  # skip the rest of the huge line, a chunk at a time
                raw = handle.readline(1 << 20)
            yield number, None
            continue
        yield number, raw


def parse_instance(raw: bytes, resolve_project: Resolver, source: str) -> NewTask:
    """One line as a task; BadLine naming what to fix."""
    return parse_line(raw, resolve_project, source)[0]


def parse_line(raw: bytes, resolve_project: Resolver, source: str) -> tuple[NewTask, dict[str, Any]]:
    """One line as a task and the line's optional priority hints (HINT_KEYS); BadLine naming what to fix."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadLine(f"not UTF-8 (byte {exc.start}); save the file as UTF-8") from exc
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise BadLine(f"not JSON ({_short(exc)}); each line must be one JSON object") from exc
    if not isinstance(data, dict):
        raise BadLine(f"a JSON {type(data).__name__}, not an object; each line must be one JSON object")
    missing = [name for name in REQUIRED if name not in data]
    if missing:
        raise BadLine(f"missing {', '.join(missing)}; every instance needs {', '.join(REQUIRED)}")
    _no_lone_surrogates(data)
    fields = _task_fields(data)
    try:
        project = resolve_project(fields["repo"])
    except TaskError as exc:
        raise BadLine(str(exc)) from exc
    if project is None:
        raise BadLine(
            f"repo {fields['repo']!r} is no registered project; add it (`supervisor project add NAME SOURCE`, "
            "named owner__name or with a source ending in the repo) or leave the line out"
        )
    try:
        task = NewTask(
            project=project,
            title=fields["title"],
            body=fields["problem_statement"],
            base_commit=fields["base_commit"],
            fail_to_pass=fields["FAIL_TO_PASS"],
            pass_to_pass=fields["PASS_TO_PASS"],
            test_patch=fields["test_patch"],
            priority=fields["priority"],
            external_id=fields["instance_id"],
            source=source,
        )
    except ValidationError as exc:
        raise BadLine(_validation_text(exc)) from exc
    return task, {key: data[key] for key in HINT_KEYS if key in data}


def _task_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The fields, type-checked and normalised; BadLine for the first wrong one."""
    for name in ("instance_id", "repo", "base_commit", "problem_statement", "test_patch"):
        if not isinstance(data[name], str):
            raise BadLine(f"{name} must be a string, not {type(data[name]).__name__}")
    if not data["instance_id"].strip():
        raise BadLine("instance_id is empty; give each instance its id")
    if not HEX40.match(data["base_commit"]):
        raise BadLine(f"base_commit {data['base_commit'][:60]!r} is not 40 hex digits; give the full commit id")
    priority = data.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise BadLine(f"priority must be a whole number, not {json.dumps(priority)[:40]}")
    title = data.get("title")
    if title is not None and not isinstance(title, str):
        raise BadLine(f"title must be a string, not {type(title).__name__}")
    return {
        **data,
        "base_commit": data["base_commit"].lower(),
        "FAIL_TO_PASS": _test_list(data["FAIL_TO_PASS"], "FAIL_TO_PASS"),
        "PASS_TO_PASS": _test_list(data["PASS_TO_PASS"], "PASS_TO_PASS"),
        "priority": priority,
        "title": title if title is not None else default_title(data["problem_statement"], data["instance_id"]),
    }


def _test_list(value: object, name: str) -> list[str]:
    """A list of test ids, given as a list or (as SWE-bench does) as a JSON string holding one."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError) as exc:
            raise BadLine(f"{name} is a string but not a JSON list ({_short(exc)}); give a list of test ids") from exc
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BadLine(f"{name} must be a list of test ids (strings), or a JSON string of one")
    return value


def default_title(problem_statement: str, instance_id: str) -> str:
    """The first non-blank line of the problem statement (else the instance id), cut to MAX_TITLE."""
    for line in problem_statement.splitlines():
        if line.strip():
            return line.strip()[:MAX_TITLE]
    return instance_id.strip().splitlines()[0][:MAX_TITLE] if instance_id.strip() else "untitled"


def _no_lone_surrogates(value: object, where: str = "") -> None:
    """JSON's \\ud800 escapes make strings no UTF-8 encoder (nor the queue) accepts; refuse them here."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise BadLine(f"{where or 'a key'} holds a lone surrogate escape (\\ud800-\\udfff); fix the text") from exc
    elif isinstance(value, list):
        for item in value:
            _no_lone_surrogates(item, where)
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_lone_surrogates(key)
            _no_lone_surrogates(item, str(key))


def _validation_text(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [FILE_NAMES.get(str(part), str(part)) for part in err["loc"]]
        parts.append(f"{'.'.join(loc) or 'instance'}: {err['msg']}")
    return "; ".join(parts)


def _short(exc: BaseException) -> str:
    return str(exc)[:120] or type(exc).__name__
