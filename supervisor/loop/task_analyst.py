"""A fleet node's analyst: answers `fleet analyse` requests, one model call each, through the metered route.

A thread beside the event loop, only on a node of a fleet with `[fleet.analysis] enabled`. Every
`poll_s` it takes the oldest request (supervisor/store/tasks/pg_analysis.py), asks the agent's model
for the task's category, complexity and solvability through this node's own LLM route, as a client
with a credential of its own (run `fleet-analysis`), so the call is reserved at its worst case
against the node's and the fleet's caps before it is forwarded and settled after, like the agent's.
Its spend counts against the weekly and daily caps and the analysed task's project cap.

What can happen to a request: an answer that is one valid estimate re-prioritises the task; any
other answer (malformed, out of range, too long, an error the model will repeat) is recorded as
the analysis's failure and changes nothing else; a refusal that passes (a cap reached, the fleet's
budget or the database unreachable, the route stopping, a timeout) hands the request back to wait
for a later poll. The thread holds no lock and no transaction while the model answers; killed at
any moment, its taking turns stale and another poll takes it again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx2

from supervisor.base.pg.errors import DatabaseError
from supervisor.base.pg.pool import Database
from supervisor.base.throttle import Throttle
from supervisor.route.handler import CYCLE_HEADER
from supervisor.route.server import UDS_BASE_URL, LLMRoute
from supervisor.store.fleet_settings import FleetAnalysis, PriorityWeights
from supervisor.store.tasks.analysis import AnalysisError, analysis_request, answer_text, parse_analysis
from supervisor.store.tasks.models import TaskState

if TYPE_CHECKING:
    from supervisor.store.tasks.pg_analysis import Taking

RUN_ID = "fleet-analysis"
API_VERSION = "2023-06-01"
ROUTE_MARGIN_S = 30.0  # beyond the route's own bound on a call, before the analyst stops waiting for its answer
RETRY_STATUSES = frozenset({402, 408, 409, 429, 500, 502, 503, 504, 529})  # passes: asked again later
log = logging.getLogger(__name__)


class Later(Exception):
    """The request could not be made now; it waits for a later poll."""


class TaskAnalyst:
    def __init__(
        self,
        database: Database,
        *,
        node: str,
        route: Callable[[], LLMRoute | None],
        model: str,
        settings: FleetAnalysis,
        weights: PriorityWeights,
        timeout_s: float = 120.0,
    ) -> None:
        self.db = database
        self.node = node
        self.route = route
        self.model = model
        self.settings = settings
        self.weights = weights
        self.timeout_s = timeout_s
        self.analysed = 0
        self.failed = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned = Throttle(300.0)

    def start(self) -> None:
        if self.settings.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="task-analyst", daemon=True)
            self._thread.start()

    def stop(self, wait_s: float = 5.0) -> None:
        """Stop taking requests; a call in flight ends with the route (stopped after this)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(wait_s)

    def _run(self) -> None:
        while not self._stop.wait(self.settings.poll_s):
            try:
                while not self._stop.is_set() and self.step():
                    pass
            except DatabaseError as exc:
                if self._warned.allow("database"):
                    log.warning("task analysis paused: %s", exc)
            except Exception:  # a bug costs one poll, never the supervisor
                log.exception("task analysis: unexpected error; trying again at the next poll")

    def step(self) -> bool:
        """Take and answer one request; False when there was none or it must wait (then the poll ends)."""
        from supervisor.store.tasks.pg_analysis import fail_analysis, take_analysis

        route = self.route()
        if route is None or (route.socket_path is None and route.url_tcp is None):
            return False
        taking = take_analysis(self.db, self.node, self._stale_s(route))
        if taking is None:
            return False
        if taking.task.state != TaskState.QUEUED:
            self._failed(fail_analysis(self.db, taking, f"the task was {taking.task.state.value} before its analysis"))
            return True
        try:
            return self._answer(route, taking)
        except DatabaseError:
            raise  # nothing can be recorded now: the taking goes stale and is taken again
        except Exception as exc:  # a bug, or a row this node cannot read: never left to go stale and be paid again
            log.exception("task %s: its analysis failed unexpectedly; recorded as failed", taking.task.id)
            self._failed(fail_analysis(self.db, taking, f"unexpected error: {type(exc).__name__}: {exc}"))
            return True

    def _answer(self, route: LLMRoute, taking: Taking) -> bool:
        """Ask about the taken task and record what came of it; False when it must wait."""
        from supervisor.store.tasks.pg_analysis import fail_analysis, finish_analysis, hand_back

        try:
            analysis = parse_analysis(self._ask(route, taking))
        except Later as exc:
            hand_back(self.db, taking)
            if self._warned.allow("later"):
                log.info("task analysis waits: %s", exc)
            return False
        except AnalysisError as exc:
            self._failed(fail_analysis(self.db, taking, str(exc)))
            log.warning("task %s: the model's analysis was refused: %s", taking.task.id, exc)
            return True
        breakdown = finish_analysis(self.db, taking, analysis, self.weights, datetime.now(UTC))
        if breakdown is not None:
            self.analysed += 1
            log.info(
                "task %s analysed: %s; priority %s",
                taking.task.id,
                analysis.model_dump(mode="json"),
                breakdown.priority,
            )
        return True

    def _stale_s(self, route: LLMRoute) -> float:
        """When another node's taking counts as abandoned: `stale_s`, but never before a call this node
        would still wait for could have ended (else a slow answer is taken over and paid twice)."""
        return max(self.settings.stale_s, 2 * route.upstream.deadline_s + 2 * ROUTE_MARGIN_S)

    def _timeout(self, route: LLMRoute) -> httpx2.Timeout:
        """`timeout_s` to reach the route; for its answer, longer than the route can take to end the call
        itself (its answer metered, or its 504 with nothing charged). An analyst that gave up sooner would
        hand the request back after the route charged the model's answer, and pay again at every poll.
        The route waits up to its deadline for the answer to begin, and the answer may have begun just
        before the deadline with a read of up to the deadline again: twice the deadline, and a margin."""
        return httpx2.Timeout(self.timeout_s, read=max(self.timeout_s, 2 * route.upstream.deadline_s + ROUTE_MARGIN_S))

    def _failed(self, recorded: bool) -> None:
        if recorded:
            self.failed += 1

    def _ask(self, route: LLMRoute, taking: Taking) -> str:
        """The model's answer text, asked through `route`; Later for what passes, AnalysisError for the rest."""
        body = analysis_request(taking.task, self.model, self.settings.max_tokens, self.settings.body_chars)
        socket = None if route.socket_path is None else str(route.socket_path)
        base_url = UDS_BASE_URL if socket else str(route.url_tcp)
        credential = route.issue_credential(RUN_ID)
        try:  # from here on the credential and the project charge are always taken back
            if route.fleet is not None:
                route.fleet.charge_run(RUN_ID, taking.task.project)  # the analysed task's project cap
            transport = httpx2.HTTPTransport(uds=socket, trust_env=False)
            with httpx2.Client(transport=transport, base_url=base_url, timeout=self._timeout(route)) as client:
                response = client.post(
                    "/v1/messages",
                    json=body,
                    headers={
                        "x-api-key": credential,
                        "anthropic-version": API_VERSION,
                        CYCLE_HEADER: f"analysis-task-{taking.task.id}",
                    },
                )
        except httpx2.HTTPError as exc:
            raise Later(f"the LLM route did not answer ({type(exc).__name__})") from None
        finally:
            route.revoke_credential(credential)
            if route.fleet is not None:
                route.fleet.charge_run(RUN_ID, None)
        if response.status_code in RETRY_STATUSES:
            raise Later(f"the LLM route answered {response.status_code}: {_said(response)}")
        if response.status_code != 200:
            raise AnalysisError(f"the LLM route refused the request ({response.status_code}): {_said(response)}")
        try:
            payload = response.json()
        except ValueError:
            raise AnalysisError("the model's response is not JSON") from None
        return answer_text(payload)


def _said(response: httpx2.Response) -> str:
    """The error message of a Messages API error body, bounded."""
    try:
        error = response.json().get("error", {})
        message = error.get("message") if isinstance(error, dict) else None
    except (ValueError, AttributeError):
        message = None
    return str(message or response.text)[:300]
