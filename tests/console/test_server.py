"""The console server's guards, without Docker: read-only, loopback names only, tokens, CSP, escaping."""

from __future__ import annotations

import json
import threading
from datetime import UTC

import httpx2 as httpx
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from supervisor.cli import main as cli
from supervisor.console.server import CSP, ConsoleError, ConsoleServer, make_server
from supervisor.console.view import InstanceView
from supervisor.store.decision_log import DecisionLog
from supervisor.store.instance import Instance

from .helpers import synthetic_instance

HOSTILE = "<script>alert(1)</script>\x1b[31mred\x1b]8;;http://x\x07link <img src=x onerror=alert(2)>"


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home"
    synthetic_instance(home, 3)
    DecisionLog(home / "repo.git" / "ouroboros" / "decisions.jsonl").append(
        "rejected",
        candidate="3-1",
        commit="f" * 40,
        reasons=[HOSTILE],
        details={"summary": HOSTILE, "failures": [{"test_id": HOSTILE, "message": HOSTILE}]},
    )
    return home


def _serve(server):
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def server(home):
    server = _serve(make_server(home, "127.0.0.1:0"))
    yield server
    server.shutdown()
    server.server_close()


def test_every_page_is_read_only_with_a_strict_policy(server):
    for path in ("", "c/3-1", "g/1", "log", "journal", "metrics", "generations?before=2", "static/console.css"):
        response = httpx.get(server.url + path)
        assert response.status_code == 200, path
        assert response.headers["content-security-policy"] == CSP
        assert response.headers["x-content-type-options"] == "nosniff"
    assert "script-src" not in CSP and "default-src 'none'" in CSP
    assert httpx.post(server.url, content=b"x").status_code == 405
    assert httpx.request("DELETE", server.url + "c/3-1").status_code == 405
    for path in ("g/abc", "c/../../etc/passwd", "c/3-1/x", "nothing", "g/99999999999999"):
        assert httpx.get(server.url + path).status_code == 404, path


def test_hostile_text_is_escaped_and_its_controls_made_visible(server):
    for path in ("", "c/3-1"):
        body = httpx.get(server.url + path).content
        assert b"<script>" not in body and b"<img" not in body and b"\x1b" not in body and b"\x07" not in body
        assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in body
        assert "\u241b[31mred".encode() in body and b"\\x07" in body


def test_loopback_answers_loopback_names_only(server):
    assert httpx.get(server.url, headers={"Host": "evil.example"}).status_code == 421  # DNS rebinding
    assert httpx.get(server.url, headers={"Host": f"localhost:{server.server_address[1]}"}).status_code == 200


def test_a_public_bind_needs_a_token_and_checks_it(home):
    with pytest.raises(ConsoleError, match="token"):
        make_server(home, "0.0.0.0:0")
    server = _serve(ConsoleServer(InstanceView(Instance.locate(home)), "0.0.0.0", 0, "s3cret-token"))
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        assert httpx.get(url).status_code == 401
        assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(url + "metrics", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
        first = httpx.get(url + "?token=s3cret-token")
        assert first.status_code == 200 and "SameSite=Strict" in first.headers["set-cookie"]
        cookie = first.headers["set-cookie"].split(";")[0]
        assert httpx.get(url, headers={"Cookie": cookie}).status_code == 200
    finally:
        server.shutdown()
        server.server_close()


def test_the_log_page_verifies_the_whole_chain(home, server):
    assert "records verified" in httpx.get(server.url + "log").text
    path = home / "repo.git" / "ouroboros" / "decisions.jsonl"
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace("proposal", "pr0posal")
    path.write_text("\n".join(lines) + "\n")
    assert "BROKEN at line 3" in httpx.get(server.url + "log").text


def test_metrics_parse_and_scorecard_cli(home, server):
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(server.url + "metrics").text)}
    assert families["ouroboros_generation"].samples[0].value == 3
    verdicts = {s.labels["verdict"]: s.value for s in families["ouroboros_proposals"].samples}
    assert verdicts == {"accepted": 3, "rejected": 4}
    result = CliRunner().invoke(cli, ["scorecard", "--home", str(home), "--json"])
    assert result.exit_code == 0, result.output
    cards = json.loads(result.output)
    assert [c["generation"] for c in cards] == [3, 2, 1, 0] and cards[1]["tokens"] == 1000
    text = CliRunner().invoke(cli, ["scorecard", "--home", str(home)])
    assert text.exit_code == 0 and "proposal 1-2" in text.output
    missing = CliRunner().invoke(cli, ["scorecard", "--home", str(home / "nope")])
    assert missing.exit_code != 0 and "Traceback" not in missing.output


def test_metrics_carry_the_routes_exact_refusal_counts_from_status(home, server):
    from supervisor.store.status_file import Status, StatusFile

    path = Instance(home).status_file
    path.parent.mkdir(parents=True, exist_ok=True)
    assert StatusFile(path).write(Status(route_refusals={"rate_limit_error": 40, "authentication_error": 5}))
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(server.url + "metrics").text)}
    counted = {
        s.labels["reason"]: s.value for s in families["ouroboros_route_refusals"].samples if s.name.endswith("_total")
    }
    assert counted == {"rate_limit_error": 40, "authentication_error": 5}


def test_console_cli_refuses_a_public_bind_without_a_token(home):
    result = CliRunner().invoke(cli, ["console", "--home", str(home), "--bind", "0.0.0.0:0"])
    assert result.exit_code != 0 and "token" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["console", "--home", str(home), "--bind", "nonsense"])
    assert result.exit_code != 0 and "HOST:PORT" in result.output


def test_start_in_thread_serves_until_shut_down(home):
    from supervisor.console.server import start_in_thread

    server = start_in_thread(home, "127.0.0.1:0")
    try:
        assert "Lineage" in httpx.get(server.url).text
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(httpx.TransportError):
        httpx.get(server.url, timeout=2)


def test_a_store_that_cannot_update_shows_what_it_has_and_says_so(home, server, monkeypatch):
    import sqlite3

    def broken() -> int:
        raise sqlite3.OperationalError("attempt to write a readonly database")

    assert "could not be updated" not in httpx.get(server.url).text  # consumed once
    monkeypatch.setattr(server.view.store, "update", broken)
    page = httpx.get(server.url).text
    assert "could not be updated" in page and "readonly database" in page and "proposal 1-2" in page


def test_invented_model_names_do_not_multiply_series(home, server):
    from datetime import datetime

    from supervisor.route.ledger import LEDGER_FILE_NAME, Ledger

    from .helpers import entry

    ledger = Ledger.open(home / "repo.git" / "ouroboros" / LEDGER_FILE_NAME)
    for index in range(5):
        ledger.append(entry(datetime.now(UTC), "c", 10, "0.001", model=f"claude-sonnet-5-x{index}"))
    ledger.close()
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(server.url + "metrics").text)}
    usd = {s.labels["model"]: s.value for s in families["ouroboros_llm_usd"].samples}
    assert usd == {"claude-sonnet-5": pytest.approx(0.005), "other": pytest.approx(0.12)}
