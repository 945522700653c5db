"""`supervisor fleet ...` on a real PostgreSQL, real instances and real git repositories: status, tasks,
add, import, drain, task show (its diff from a shared results repository), every error said clearly."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from supervisor.base.pg.pool import Database
from supervisor.cli import main
from supervisor.store.fleet_nodes import NodeInfo, heartbeat, register_node
from supervisor.store.instance_init import init_instance
from supervisor.store.projects import ProjectConfig, ProjectRegistry
from supervisor.store.tasks.models import TaskVerdict
from supervisor.store.tasks.pg_queue import PostgresTaskQueue

GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "HOME": "/nonexistent",
    "PATH": "/usr/bin:/bin",
}
PW_ENV = "FLEET_CLI_PW"
HOSTILE = "<script>alert(1)</script>\x1b[2J\x1b]0;owned\x07 \u202eevil"
SECRET = "HIDDEN-FLEET-PATCH-91"
PATCH = (
    "diff --git a/tests/test_calc.py b/tests/test_calc.py\n"
    "--- a/tests/test_calc.py\n+++ b/tests/test_calc.py\n"
    "@@ -1,2 +1,5 @@\n from calc import add\n def test_add(): assert add(1, 2) == 3\n"
    f"+\n+def test_hidden():  # {SECRET}\n+    assert add(2, 2) == 4\n"
)


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd, env=GIT_ENV, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


class Node:
    """One instance (HOME) configured for the test's fleet database."""

    def __init__(self, home: Path, url: str, password: str, extra: str = "") -> None:
        init_instance(home)
        (home / "ouroboros.toml").write_text(
            f'[fleet]\ndatabase = "{url}"\npassword_env = "{PW_ENV}"\nnode = "{home.name}"\n{extra}'
        )
        self.home, self.env = str(home), {PW_ENV: password}

    def cli(self, *args: str, code: int = 0) -> str:
        result = CliRunner().invoke(main, [*args, "--home", self.home], env=self.env)
        assert result.exit_code == code, (result.exit_code, result.output, result.exception)
        assert "Traceback" not in result.output
        return result.output

    def json(self, *args: str, code: int = 0) -> object:
        return json.loads(self.cli(*args, "--json", code=code))

    def error(self, *args: str, code: int = 1) -> str:
        body = self.json(*args, code=code)
        assert isinstance(body, dict) and set(body) == {"error"}, body
        assert self.cli(*args, code=code).startswith("Error: ")
        return str(body["error"]["message"])


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "demo-src"
    src.mkdir()
    git(src, "init", "-q", "-b", "main")
    (src / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (src / "tests").mkdir()
    (src / "tests" / "test_calc.py").write_text("from calc import add\ndef test_add(): assert add(1, 2) == 3\n")
    git(src, "add", "-A")
    git(src, "commit", "-qm", "first")
    return src


@pytest.fixture
def nodes(pg_cluster, pg_database: str, tmp_path: Path, source: Path) -> tuple[Node, Node]:
    """`with-mirror` has project demo locally (a mirror); `bare-node` has no project at all."""
    remote = tmp_path / "results.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    extra = f'results_remote = "{remote}"\n[fleet.budgets]\nlanguage_tasks = 3\n'
    one = Node(tmp_path / "with-mirror", pg_database, pg_cluster.password, extra)
    registry = ProjectRegistry(Path(one.home) / "projects")
    registry.save(ProjectConfig(name="demo", source=str(source)))
    git(tmp_path, "clone", "-q", "--bare", str(source), str(registry.mirror("demo")))
    two = Node(tmp_path / "bare-node", pg_database, pg_cluster.password, extra)
    return one, two


@pytest.fixture
def db(open_db: Callable[..., Database]) -> Database:
    return open_db("observer")


def test_projects_and_tasks_with_their_priority(nodes: tuple[Node, Node], source: Path, tmp_path: Path) -> None:
    one, two = nodes
    message = one.error("fleet", "add", "--project", "demo", "--title", "x")
    assert "no project 'demo' in the fleet" in message and "fleet project add demo SOURCE" in message
    added = one.json("fleet", "project", "add", "demo", str(source))
    assert added == {"name": "demo", "source": str(source), "language": "python", "language_from": "detected"}
    assert two.json("fleet", "project", "add", "other", "https://example.invalid/o.git")["language"] == "unknown"  # type: ignore[index]
    patch, body = tmp_path / "hidden.patch", tmp_path / "body.md"
    patch.write_text(PATCH)
    body.write_text("add() subtracts instead of adding, which is a regression since 1.2.\n" * 3)
    out = one.json(
        "fleet", "add", "--project", "demo", "--title", "Fix add", "--body-file", str(body),
        "--fail-to-pass", "tests/test_calc.py::test_hidden", "--test-patch", str(patch), "--urgency", "0.25",
    )  # fmt: skip
    assert isinstance(out, dict)
    task, breakdown = out["task"], out["breakdown"]
    assert task["base_commit"] == git(source, "rev-parse", "main") and out["language"] == "python"
    factors = breakdown["factors"]
    assert factors["urgency"] == {
        "value": 0.25, "weight": 0.5, "product": 0.125, "source": "given", "why": "given with the task"
    }  # fmt: skip
    assert factors["impact"]["value"] == 0.9 and factors["impact"]["source"] == "rule"
    assert factors["health"]["value"] == 0.5 and factors["solvability"]["value"] == 1.0  # 1 test, 210 chars
    total = 0.5 * 1 + 0.9 * 2 + 1.0 * 1.5 + 0.25 * 0.5
    assert breakdown["total"] == pytest.approx(total) and task["priority"] == round(total * 1000) == 3925
    assert SECRET not in json.dumps(out) and task["test_patch_bytes"] == len(PATCH.encode())
    shown = one.cli("fleet", "task", "show", str(task["id"]))
    assert "priority     3.925 (stored as 3925)" in shown and "urgency      0.250 × 0.5 = 0.125  given" in shown
    assert "language     python" in shown and SECRET not in shown
    # A node without the project's mirror needs the full base commit.
    message = two.error("fleet", "add", "--project", "demo", "--title", "y", "--base", "main")
    assert "no mirror of 'demo'" in message and "full 40-hex commit id" in message
    base = git(source, "rev-parse", "main")
    low = two.json("fleet", "add", "--project", "demo", "--title", "Fix typo in docs", "--base", base.upper())
    assert low["task"]["base_commit"] == base and low["breakdown"]["factors"]["impact"]["value"] == 0.2  # type: ignore[index]
    listed = one.json("fleet", "tasks")
    assert isinstance(listed, list) and [t["task"]["id"] for t in listed] == [task["id"], low["task"]["id"]]  # type: ignore[index]
    text = one.cli("fleet", "tasks", "--state", "queued", "--limit", "1")
    assert "Fix add" in text and "Fix typo" not in text and "3925" in text


def test_the_per_language_limit_refuses_whole_batches(nodes: tuple[Node, Node], source: Path) -> None:
    one, _ = nodes
    one.cli("fleet", "project", "add", "demo", str(source))
    for n in range(3):
        one.cli("fleet", "add", "--project", "demo", "--title", f"task {n}")
    message = one.error("fleet", "add", "--project", "demo", "--title", "one too many")
    assert "per-language task limit" in message and "python: 3 open + 1 new > 3" in message
    assert "nothing was queued" in message
    assert one.cli("fleet", "add", "--project", "demo", "--title", "as go", "--language", "go").startswith("queued")
    one.cli("task", "list")  # the embedded queue is untouched by fleet commands
    status = one.json("fleet", "status")
    assert isinstance(status, dict)
    assert status["languages"] == [
        {"language": "go", "open": 1, "limit": 3},
        {"language": "python", "open": 3, "limit": 3},
    ]
    assert status["queue"]["queued"] == 4 and "python           3 of 3" in one.cli("fleet", "status")


def _jsonl(tmp_path: Path, lines: list[object]) -> Path:
    path = tmp_path / "set.jsonl"
    path.write_bytes(b"\n".join(x if isinstance(x, bytes) else json.dumps(x).encode() for x in lines) + b"\n")
    return path


def _instance(base: str, n: int, **extra: object) -> dict[str, object]:
    return {
        "instance_id": f"demo-{n}", "repo": "acme/demo", "base_commit": base, "problem_statement": f"Problem {n}",
        "FAIL_TO_PASS": '["tests/test_calc.py::test_add"]', "PASS_TO_PASS": "[]", "test_patch": "",
        "patch": "THE ANSWER", **extra,
    }  # fmt: skip


def test_import_takes_hints_and_refuses_bad_lines(nodes: tuple[Node, Node], source: Path, tmp_path: Path) -> None:
    one, two = nodes
    two.cli("fleet", "project", "add", "demo", "https://example.invalid/acme/demo.git", "--language", "python")
    base = git(source, "rev-parse", "main")
    opened = (datetime.now(UTC) - timedelta(days=30)).isoformat()
    good = [
        _instance(base, 1, impact=1.0, labels=["bug"], created_at=opened),
        _instance(base, 2, solvability=0.0, health=1),
    ]
    bad = [
        _instance(base, 3, impact=7),
        _instance(base, 4, labels="bug"),
        b"\xff\xfe not utf-8",
        _instance("0" * 40, 5, repo="nobody/nothing"),
    ]
    path = _jsonl(tmp_path, [*good, *bad])
    message = two.error("fleet", "import", str(path))
    assert "4 bad line(s), nothing was queued" in message
    assert "line 3: priority hints: impact" in message and "line 4: priority hints: labels" in message
    assert "line 5: not UTF-8" in message and "line 6: repo 'nobody/nothing'" in message
    assert two.json("fleet", "tasks") == []
    out = two.json("fleet", "import", str(path), "--skip-bad")
    assert isinstance(out, dict) and len(out["queued"]) == 2 and [s["line"] for s in out["skipped"]] == [3, 4, 5, 6]
    assert out["unchecked_bases"] == ["demo"]  # this node has no mirror of demo
    first = two.json("fleet", "task", "show", str(out["queued"][0]))
    assert isinstance(first, dict) and "THE ANSWER" not in json.dumps(first)
    f = first["breakdown"]["factors"]
    assert f["impact"]["source"] == "given" and f["urgency"]["value"] == 0.5  # 30 days: 30/(30+30)
    assert first["metadata"]["labels"] == ["bug"] and first["metadata"]["language"] == "python"
    second = two.json("fleet", "task", "show", str(out["queued"][1]))
    assert second["breakdown"]["factors"]["health"]["source"] == "given"  # type: ignore[index]
    again = two.error("fleet", "import", str(_jsonl(tmp_path, good)))
    assert "instance 'demo-1' is already task" in again
    # The node with a mirror checks the bases there.
    wrong = _jsonl(tmp_path, [_instance("1" * 40, 9)])
    assert "is not in the mirror of 'demo'" in one.error("fleet", "import", str(wrong))


def test_status_drain_and_task_show_with_the_result_diff(
    nodes: tuple[Node, Node], source: Path, db: Database, tmp_path: Path
) -> None:
    one, two = nodes
    one.cli("fleet", "project", "add", "demo", str(source))
    added = one.json("fleet", "add", "--project", "demo", "--title", HOSTILE[:100].replace("\n", " "))
    task_id = added["task"]["id"]  # type: ignore[index]
    register_node(db, NodeInfo(id="node-a", host="host-a", home="/srv/a", version="1.0"))
    register_node(db, NodeInfo(id="node-b", host="host-b", home="/srv/b", version="1.0"))
    with db.transaction() as cursor:  # node-b last spoke an hour ago by the database's clock
        cursor.execute("UPDATE nodes SET heartbeat_at = now() - interval '1 hour' WHERE id = 'node-b'")
    queue = PostgresTaskQueue(db)
    claim = queue.claim("node-a", 600)
    assert claim is not None and claim.task_id == task_id
    # The node pushes its result to the shared results repository.
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(source), str(work))
    (work / "calc.py").write_text("def add(a, b):\n    return a + b  # fixed\n")
    git(work, "commit", "-qam", "fix")
    result, branch = git(work, "rev-parse", "HEAD"), f"refs/ouroboros/tasks/task-{task_id}-1"
    git(work, "push", "-q", str(tmp_path / "results.git"), f"HEAD:{branch}")
    assert queue.mark_judging(claim, result, branch, "fixed add")
    status = one.json("fleet", "status")
    assert isinstance(status, dict)
    by_id = {n["id"]: n for n in status["nodes"]}
    assert by_id["node-a"]["holds"] == [task_id] and not by_id["node-a"]["late"]
    assert by_id["node-a"]["heartbeat_age_s"] < 60 and by_id["node-b"]["late"]
    assert 3590 < by_id["node-b"]["heartbeat_age_s"] < 3700 and status["queue"]["judging"] == 1
    assert status["spend"] == [  # no request yet: this week at 0 of the configured cap
        {"cap": "weekly_tokens", "scope": status["spend"][0]["scope"], "unit": "tokens", "spent": 0.0,
         "reserved": 0.0, "limit": 5_000_000.0}
    ]  # fmt: skip
    with db.transaction() as cursor:  # what the fleet's budget holds once requests were made (last week's: not shown)
        cursor.execute(
            "INSERT INTO budget_caps (id, scope, key, unit, cap, spent, reserved) VALUES"
            " ('project:demo:tokens', 'project', 'demo', 'tokens', 100000, 1234, 50),"
            " ('week:2001-W01:tokens', 'week', '2001-W01', 'tokens', 5000000, 99, 0),"
            " ('day:' || to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD') || ':usd', 'day',"
            "  to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD'), 'usd', 40, 1.25, 0.5)"
        )
    spend = one.json("fleet", "status")["spend"]  # type: ignore[index]
    assert [(line["cap"], line["spent"], line["reserved"], line["limit"]) for line in spend] == [
        ("weekly_tokens", 0.0, 0.0, 5_000_000.0), ("day_usd", 1.25, 0.5, 40.0), ("project_tokens", 1234.0, 50.0, 100_000.0)
    ]  # fmt: skip
    text = one.cli("fleet", "status")
    assert "1,234 of 100,000 tokens (+50 held)" in text and "$1.25 of $40.00 (+$0.50 held)" in text
    assert "runs " + str(task_id) in text and "LATE" in text and "\x1b" not in text
    assert "node 'nobody'" in one.error("fleet", "drain", "nobody") and "node-a, node-b" in one.error(
        "fleet", "drain", "nobody"
    )
    drained = one.json("fleet", "drain", "node-a")
    assert drained == {"node": "node-a", "draining": True, "holds": [task_id]}
    assert "DRAINING" in one.cli("fleet", "status")
    assert one.json("fleet", "drain", "node-a", "--undo") == {"node": "node-a", "draining": False, "holds": [task_id]}
    # The diff from the results repository, from either node, as text and JSON.
    shown = two.json("fleet", "task", "show", str(task_id))
    assert isinstance(shown, dict) and "return a + b  # fixed" in shown["diff"] and shown["diff_note"] is None
    text = one.cli("fleet", "task", "show", str(task_id))
    assert "+    return a + b  # fixed" in text and "\x1b" not in text and "<script>" in text
    # Over a URL (file://): fetched into a temporary repository.
    url_node = Node(tmp_path / "url-node", one_url(db), "", f'results_remote = "file://{tmp_path / "results.git"}"\n')
    url_node.env = one.env
    assert "# fixed" in (url_node.json("fleet", "task", "show", str(task_id))["diff"] or "")  # type: ignore[index]
    assert queue.finish(claim, TaskVerdict(outcome="passed", reason="ok", base_commit=added["task"]["base_commit"]))  # type: ignore[index]
    recent = one.json("fleet", "status")["recent"]  # type: ignore[index]
    assert recent[0]["task_id"] == task_id and recent[0]["outcome"] == "passed" and recent[0]["worker"] == "node-a"
    # A branch that was never pushed: said, not a crash.
    with db.transaction() as cursor:
        cursor.execute("UPDATE tasks SET result_branch = 'refs/ouroboros/tasks/nope' WHERE id = %s", (task_id,))
    assert "has no refs/ouroboros/tasks/nope" in (two.json("fleet", "task", "show", str(task_id))["diff_note"] or "")  # type: ignore[index]
    assert heartbeat(db, "node-a")


def one_url(db: Database) -> str:
    with db.transaction() as cursor:
        cursor.execute("SELECT current_database() AS name, inet_server_port() AS port")
        row = cursor.fetchone()
    assert row is not None
    return f"postgresql://fleet@127.0.0.1:{row['port']}/{row['name']}"


def test_clear_errors(nodes: tuple[Node, Node], pg_cluster, tmp_path: Path) -> None:
    one, _ = nodes
    plain = tmp_path / "plain"
    init_instance(plain)
    for args in (("fleet", "status"), ("fleet", "tasks"), ("fleet", "drain", "x"), ("fleet", "task", "show", "1")):
        result = CliRunner().invoke(main, [*args, "--home", str(plain), "--json"])
        assert result.exit_code == 1 and "no [fleet] database" in json.loads(result.output)["error"]["message"]
    assert "no task 999" in one.error("fleet", "task", "show", "999")
    one.env = {PW_ENV: "wrong"}
    assert "refused the password" in one.error("fleet", "status")
    old_url = pg_cluster.url(pg_cluster.create_database(pg_cluster.fresh_name()))  # never migrated
    old_node = Node(tmp_path / "old", old_url, pg_cluster.password)
    assert "run `supervisor fleet migrate`" in old_node.error("fleet", "status")


def test_an_import_of_many_chunks_is_all_or_nothing(pg_cluster, pg_database: str, db: Database, tmp_path: Path) -> None:
    """2,100 lines (three chunks of the streaming import): a bad line near the end, an unknown project,
    a repeated or already queued instance, or the per-language limit refuses the whole file, naming
    the line, and queues nothing; a good file comes back as ids in file order."""
    base, count = "ab" * 20, 2100
    big = Node(tmp_path / "big", pg_database, pg_cluster.password, "[fleet.budgets]\nlanguage_tasks = 5000\n")
    small = Node(
        tmp_path / "small", pg_database, pg_cluster.password, f"[fleet.budgets]\nlanguage_tasks = {count - 1}\n"
    )
    big.cli("fleet", "project", "add", "demo", "https://example.invalid/acme/demo.git", "--language", "python")
    lines: list[object] = [_instance(base, n, impact=0.25 if n % 2 else None) for n in range(count)]

    def queued() -> int:
        with db.transaction() as cursor:
            cursor.execute("SELECT count(*) AS n FROM tasks")
            row = cursor.fetchone()
        assert row is not None
        return int(row["n"])

    cases = {
        "not JSON": b"{not json",
        "repo 'nobody/nothing' is no registered project": _instance(base, 9999, repo="nobody/nothing"),
        "instance 'demo-2' repeats line 3": _instance(base, 2),
        "priority hints: impact": _instance(base, 9998, impact=7),
    }
    for what, bad in cases.items():
        at = count - 10 + list(cases).index(what)  # in the last chunk, after two were inserted
        said = f"line {at + 1}: {what}"
        message = big.error("fleet", "import", str(_jsonl(tmp_path, [*lines[:at], bad, *lines[at + 1 :]])))
        assert message.startswith(f"{tmp_path / 'set.jsonl'}: 1 bad line(s), nothing was queued"), message
        assert said in message, (said, message)
        assert queued() == 0
    everything_bad = _jsonl(tmp_path, [b"[]"] * 120 + lines[120:])
    message = big.error("fleet", "import", str(everything_bad))
    assert "120 bad line(s)" in message and "line 50: a JSON list" in message and "line 51:" not in message
    assert "... and 70 more" in message and queued() == 0
    # The per-language limit counts the whole file, not a chunk.
    message = small.error("fleet", "import", str(_jsonl(tmp_path, lines)))
    assert (
        f"python: 0 open + {count} new > {count - 1}" in message and "nothing was queued" in message and queued() == 0
    )
    out = big.json("fleet", "import", str(_jsonl(tmp_path, lines)))
    assert isinstance(out, dict) and out["skipped"] == [] and out["unchecked_bases"] == ["demo"]
    ids = out["queued"]
    assert len(ids) == count and ids == sorted(ids)
    with db.transaction() as cursor:
        cursor.execute("SELECT id, external_id, priority, priority_breakdown FROM tasks ORDER BY id")
        rows = cursor.fetchall()
    assert [row["id"] for row in rows] == ids
    assert [row["external_id"] for row in rows] == [f"demo-{n}" for n in range(count)]  # file order
    for n in (0, 1, 1499, count - 1):  # each with its own breakdown: impact given on odd lines, by rule on even ones
        breakdown = rows[n]["priority_breakdown"]
        assert breakdown["priority"] == rows[n]["priority"]
        assert breakdown["factors"]["impact"]["source"] == ("given" if n % 2 else "rule")
    # One more file whose last line is already queued: refused whole.
    more = [_instance(base, count + n) for n in range(count - 1)] + [_instance(base, 7)]
    message = big.error("fleet", "import", str(_jsonl(tmp_path, more)))
    assert f"line {count}: instance 'demo-7' is already task {ids[7]}" in message and queued() == count
