"""The scripted model the candidate talks to during acceptance: it answers by what each request asks.

The supervisor serves it on a Unix socket whose directory is the only thing the acceptance container
can reach. It does not follow a fixed transcript: a request that forbids tools (plan, reflection,
or any extra call the agent's own loop adds) gets a plain answer; a request that offers tools gets
the scenario's next tool turn for the current phase. Phases move on by what the server itself
answered (never by prompt wording): execute turns, then the execute step's end, then, once a
tool-less request (the reflection) has come, the self-modify turns. It records the tool result the
agent returns for every call it made: that record is what the judge reads.
"""

from __future__ import annotations

import secrets
import socketserver
import string
import threading
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from scripted_model.scenario import Scenario as ScriptedScenario
from scripted_model.scenario import ScriptedError, Step, TextBlock, ToolUseBlock
from scripted_model.server import MessagesHandler, ScriptState
from supervisor.base.unix_socket import bind_address
from supervisor.gate.acceptance.models import Scenario, ToolCall, turns

SOCKET_NAME = "llm.sock"
MAX_BODY_BYTES = 8_000_000
MAX_REQUESTS = 80
MAX_RESULT_CHARS = 64_000
MAX_CONNECTIONS = 8


class Phase(StrEnum):
    EXECUTE = "execute"
    AWAIT_REFLECTION = "await-reflection"
    MODIFY = "modify"
    DONE = "done"


class RecordedResult(BaseModel):
    """The tool result the agent sent back for one of our calls (first one seen wins)."""

    model_config = ConfigDict(extra="forbid")

    text: str
    is_error: bool


def _tools_allowed(body: dict[str, Any]) -> bool:
    choice = body.get("tool_choice")
    forbidden = isinstance(choice, dict) and choice.get("type") == "none"
    return bool(body.get("tools")) and not forbidden


def _result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return ""


class AcceptanceState(ScriptState):
    """What the server has answered so far and what came back; shared by the handler threads."""

    def __init__(self, scenario: Scenario) -> None:
        placeholder = ScriptedScenario(name=f"acceptance-{scenario.name}", steps=[Step(content=[TextBlock(text=".")])])
        super().__init__(placeholder)
        self.acceptance = scenario
        self.execute_turns, self.modify_turns = turns(scenario.execute), turns(scenario.self_modify)
        self.phase = Phase.EXECUTE
        self.turn = 0
        self.count = 0
        self.results: dict[str, RecordedResult] = {}
        self.issued: dict[str, ToolCall] = {}
        self.stop_requested = threading.Event()
        self.flooded = False
        self._state_lock = threading.Lock()

    def next_step(self, body: dict[str, Any]) -> tuple[int, Step | None, str | None]:
        with self._state_lock:
            self.count += 1
            if self.count > MAX_REQUESTS:
                self.flooded = True
                return (
                    self.count,
                    Step(
                        error=ScriptedError(
                            status=400, type="invalid_request_error", message="request budget of this run exhausted"
                        )
                    ),
                    None,
                )
            self._record(body)
            step = self._answer(_tools_allowed(body))
            self.steps_served += 1
            stop_at = self.acceptance.stop_after_requests
            if stop_at is not None and self.count >= stop_at:
                self.stop_requested.set()
            return self.count, step, None

    def _record(self, body: dict[str, Any]) -> None:
        for message in body.get("messages") or []:
            if (
                not isinstance(message, dict)
                or message.get("role") != "user"
                or not isinstance(message.get("content"), list)
            ):
                continue
            for block in message["content"]:
                if not isinstance(block, dict) or block.get("type") != "tool_result":
                    continue
                call = self.issued.get(str(block.get("tool_use_id")))
                if call is not None and call.key not in self.results:
                    text = _result_text(block.get("content"))[:MAX_RESULT_CHARS]
                    self.results[call.key] = RecordedResult(text=text, is_error=bool(block.get("is_error")))

    def _answer(self, tools_allowed: bool) -> Step:
        scenario = self.acceptance
        if not tools_allowed:
            if self.phase is Phase.AWAIT_REFLECTION:
                self.phase, self.turn = Phase.MODIFY, 0
            return _text(f"1. Work through the task with the tools.\n2. Check each result.\n\n{scenario.reflection}")
        if self.phase is Phase.EXECUTE:
            if self.turn < len(self.execute_turns):
                self.turn += 1
                return self._tool_turn(self.execute_turns[self.turn - 1])
            self.phase = Phase.AWAIT_REFLECTION
            return _text(f"{scenario.execute_result}\n\nGOAL STATUS: complete")
        if self.phase is Phase.AWAIT_REFLECTION:
            return _text(f"{scenario.execute_result}\n\nGOAL STATUS: complete")
        if self.phase is Phase.MODIFY and self.turn < len(self.modify_turns):
            self.turn += 1
            return self._tool_turn(self.modify_turns[self.turn - 1])
        self.phase = Phase.DONE
        return _text(scenario.self_modify_result)

    def _tool_turn(self, calls: list[ToolCall]) -> Step:
        blocks: list[TextBlock | ToolUseBlock] = [TextBlock(text="Next step.")]
        for call in calls:
            tool_id = tool_use_id()
            self.issued[tool_id] = call
            blocks.append(ToolUseBlock(id=tool_id, name=call.tool, input=call.input))
        return Step(content=blocks, stop_reason="tool_use")


def tool_use_id() -> str:
    """An id shaped like the real API's (`toolu_01` + 22 base-62 characters): nothing to tell a judge by."""
    alphabet = string.ascii_letters + string.digits
    return "toolu_01" + "".join(secrets.choice(alphabet) for _ in range(22))


def _text(text: str) -> Step:
    return Step(content=[TextBlock(text=text)], stop_reason="end_turn")


class _Handler(MessagesHandler):
    """The scripted handler with the limits a hostile client needs: body size and idle reads."""

    timeout = 30  # seconds per socket read: a silent client does not hold a thread forever

    def _read_body(self) -> dict[str, Any] | None:
        try:
            length = int(self.headers.get("content-length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            self.close_connection = True
            self._send_error(413, "request_too_large", f"request bodies are limited to {MAX_BODY_BYTES} bytes")
            return None
        return super()._read_body()


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, path: str, handler: type[_Handler]) -> None:
        super().__init__(path, handler)
        self._open = 0
        self._open_lock = threading.Lock()

    def get_request(self):  # type: ignore[no-untyped-def]
        conn, _ = super().get_request()
        return conn, ("unix", 0)

    def process_request(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        with self._open_lock:
            full = self._open >= MAX_CONNECTIONS
            self._open += 0 if full else 1
        if full:
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open -= 1

    def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        pass  # a client hanging up mid-request is the client's problem


class AcceptanceServer:
    """Serves one scenario on `<directory>/llm.sock` in a background thread."""

    def __init__(self, scenario: Scenario, directory: Path) -> None:
        self.state = AcceptanceState(scenario)
        self.socket_path = directory / SOCKET_NAME
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o755)  # the container's uid must traverse it
        handler = type("AcceptanceHandler", (_Handler,), {"state": self.state})
        with bind_address(self.socket_path) as address:  # the scratch folder can be deep
            self._server = _UnixServer(address, handler)
        self.socket_path.chmod(0o666)  # uid 10001 connects; nothing else can reach this directory
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="acceptance-model", daemon=True
        )

    def __enter__(self) -> AcceptanceServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)
        self._server.server_close()
        self.socket_path.unlink(missing_ok=True)
