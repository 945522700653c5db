"""The built-in tools, registered through the same hook as the agent's own tools."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from agent.errors import ToolError
from agent.proposal import write_proposal
from agent.tool import Tool, ToolContext
from agent.workspace import relative_posix

_SKIP_DIRS = {".git", "__pycache__", ".venv", "node_modules", ".pytest_cache"}
_MAX_SCAN_BYTES = 1_000_000


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunCommandArgs(_Args):
    command: str = Field(description="shell command, run with the workspace as cwd")
    timeout_s: float | None = Field(default=None, gt=0, le=3600, description="seconds before it is killed")


class ReadFileArgs(_Args):
    path: str = Field(description="file path relative to the workspace")
    start_line: int = Field(default=1, ge=1, description="first line to return (1-based)")
    max_lines: int | None = Field(default=None, ge=1, description="how many lines to return")


class WriteFileArgs(_Args):
    path: str = Field(description="file path relative to the workspace; parent folders are created")
    content: str = Field(description="the whole new content of the file")


class SearchFilesArgs(_Args):
    pattern: str = Field(description="glob relative to the workspace, e.g. 'agent/**/*.py'")
    max_results: int = Field(default=200, ge=1, le=5000)


class SearchContentArgs(_Args):
    regex: str = Field(description="Python regular expression searched line by line")
    path: str = Field(default=".", description="file or folder to search, relative to the workspace")
    glob: str = Field(default="**/*", description="which files under `path` to search")
    max_results: int = Field(default=100, ge=1, le=5000)


class ProposeArgs(_Args):
    why: str = Field(description="why this change to your own code helps; becomes the commit message body")
    summary: str | None = Field(default=None, description="one-line subject; defaults to the first line of why")


def _wait(proc: subprocess.Popen[bytes], timeout: float, stop: threading.Event | None) -> int | str:
    """The exit code, or why the command's process group was killed (timeout, or the agent stopping)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return proc.wait(timeout=min(0.2, max(deadline - time.monotonic(), 0.01)))
        except subprocess.TimeoutExpired:
            stopping = stop is not None and stop.is_set()
            if stopping or time.monotonic() >= deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return "killed: the agent is stopping" if stopping else f"killed after {timeout:g}s timeout"


def run_command(ctx: ToolContext, args: RunCommandArgs) -> str:
    timeout = args.timeout_s or ctx.command_timeout_s
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            args.command,
            shell=True,
            cwd=ctx.workspace,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # own group: a timeout kills its children too
        )
        code = _wait(proc, timeout, ctx.stop)
        size = out.tell()
        out.seek(0)
        head = out.read(ctx.output_cap + 1).decode("utf-8", errors="replace")
    if size > ctx.output_cap:
        return f"exit code: {code}\n{head[: ctx.output_cap]}\n[... {size - ctx.output_cap} more bytes cut]"
    return f"exit code: {code}\n{head}"


def read_file(ctx: ToolContext, args: ReadFileArgs) -> str:
    path = ctx.path(args.path)
    if not path.is_file():
        raise ToolError(f"{args.path} is not a file; use search_files to find one")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
    end = None if args.max_lines is None else args.start_line - 1 + args.max_lines
    return ctx.cap("".join(lines[args.start_line - 1 : end]))


def write_file(ctx: ToolContext, args: WriteFileArgs) -> str:
    path = ctx.writable_path(args.path)
    if path.is_dir():
        raise ToolError(f"{args.path} is a folder; give a file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(args.content, encoding="utf-8")
    return f"wrote {len(args.content.encode())} bytes to {relative_posix(ctx.workspace, path)}"


def _walk(ctx: ToolContext, base: Path, pattern: str) -> Iterator[Path]:
    for found in sorted(base.glob(pattern)):
        if _SKIP_DIRS.intersection(found.relative_to(base).parts) or not found.is_file():
            continue
        try:
            yield ctx.path(str(found))  # drops symlinks that lead out of the workspace
        except ToolError:
            continue


def search_files(ctx: ToolContext, args: SearchFilesArgs) -> str:
    if Path(args.pattern).is_absolute() or ".." in Path(args.pattern).parts:
        raise ToolError("the pattern must be relative to the workspace and must not contain '..'")
    hits = [relative_posix(ctx.workspace, p) for p in _walk(ctx, ctx.workspace.resolve(), args.pattern)]
    shown = hits[: args.max_results]
    more = f"\n[{len(hits) - len(shown)} more]" if len(hits) > len(shown) else ""
    return ctx.cap("\n".join(shown) + more) if hits else "no files match"


def search_content(ctx: ToolContext, args: SearchContentArgs) -> str:
    try:
        pattern = re.compile(args.regex)
    except re.error as e:
        raise ToolError(f"bad regex {args.regex!r}: {e}") from e
    base = ctx.path(args.path)
    files = [base] if base.is_file() else _walk(ctx, base, args.glob)
    hits: list[str] = []
    for path in files:
        if path.stat().st_size > _MAX_SCAN_BYTES:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary or unreadable: not searchable text
        rel = relative_posix(ctx.workspace, path)
        hits += [f"{rel}:{n}: {line.strip()}" for n, line in enumerate(text.splitlines(), 1) if pattern.search(line)]
        if len(hits) >= args.max_results:
            break
    return ctx.cap("\n".join(hits[: args.max_results])) if hits else "no matches"


def propose(ctx: ToolContext, args: ProposeArgs) -> str:
    if ctx.phase != "reflect":
        raise ToolError("refused: proposals are made only in the reflection phase")
    proposal, path = write_proposal(ctx.outbox, args.why, args.summary)
    return f"proposal {proposal.id} written to {path.name}: {proposal.summary}"


def register_tools(register: Callable[[Tool], None]) -> None:
    register(
        Tool(
            name="run_command",
            args_model=RunCommandArgs,
            handler=run_command,
            description="Run a shell command in the workspace; returns the exit code and the (capped) combined output.",
        )
    )
    register(
        Tool(
            name="read_file",
            args_model=ReadFileArgs,
            handler=read_file,
            description="Read a text file in the workspace, optionally a range of lines.",
        )
    )
    register(
        Tool(
            name="write_file",
            args_model=WriteFileArgs,
            handler=write_file,
            description="Create or overwrite a text file in the workspace. Your own source (agent/, "
            "scripted_model/, gate.toml) is writable only in the reflection phase.",
        )
    )
    register(
        Tool(
            name="search_files",
            args_model=SearchFilesArgs,
            handler=search_files,
            description="List files in the workspace matching a glob pattern.",
        )
    )
    register(
        Tool(
            name="search_content",
            args_model=SearchContentArgs,
            handler=search_content,
            description="Search text files in the workspace for a regular expression; returns path:line: text.",
        )
    )
    register(
        Tool(
            name="propose",
            args_model=ProposeArgs,
            handler=propose,
            description="Reflection phase only: propose the changes you made to your own code for the test "
            "gate, with the reason.",
        )
    )
