"""Building a running supervisor's parts, so the event loop only decides and applies.

Two steps, because the repository lock comes first: `services` at construction (the model route,
the published status, the weather, the agent's log: nothing of the repository), `open_gatekeeper`
once the lock is held, and `parts` (the agent's process, its lifecycle, the intake, the proposal
flow, the reporter) once the engine answers. Every part gets the shared `LoopContext` and its own
collaborators through its constructor; nothing is wired after construction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from supervisor.gate.agent_container import AgentRun
from supervisor.gate.gatekeeper import Gatekeeper
from supervisor.gate.outages import EngineWait
from supervisor.loop.agent_lifecycle import AgentLifecycle
from supervisor.loop.agent_process import AgentProcess, ExitSink
from supervisor.loop.context import LoopContext
from supervisor.loop.intake import Intake
from supervisor.loop.outage_wait import DiskWeather, EngineWeather, Transition
from supervisor.loop.proposal_flow import ProposalFlow
from supervisor.loop.reporting import Reporter, StatusBoard, Tally
from supervisor.loop.route_service import ModelService
from supervisor.loop.task_flow import Holding, TaskFlow
from supervisor.loop.task_steps import TaskSteps
from supervisor.loop.task_verdicts import delivery_for
from supervisor.route.metering import EventSink
from supervisor.store.agent_log import RotatingLog

if TYPE_CHECKING:  # psycopg is imported only by a node of a fleet
    from supervisor.loop.fleet_node import FleetNode
    from supervisor.loop.task_analyst import TaskAnalyst
from supervisor.store.projects import ProjectRegistry
from supervisor.store.states import SupervisorState
from supervisor.store.tasks.queue import TaskQueue
from supervisor.store.tasks.sqlite_queue import open_queue
from supervisor.work.task_area import TaskArea
from supervisor.work.task_judge import TaskJudge

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    """What a supervisor has from its construction on."""

    models: ModelService  # the LLM route (and the scripted model), started once recovery is done
    board: StatusBoard  # the published status
    engine_weather: EngineWeather
    disk_weather: DiskWeather
    agent_log: RotatingLog


def services(
    ctx: LoopContext,
    *,
    transition: Transition,
    running: Callable[[], AgentRun | None],
    on_route_event: EventSink,
) -> Services:
    """`transition`: the event loop's one way to change its state; `running`: the agent's run now."""
    models = ModelService(ctx, on_event=on_route_event)
    board = StatusBoard(path=ctx.instance.status_file, route=lambda: models.route)

    def state() -> SupervisorState:
        return board.status.state

    logs = ctx.config.logs
    return Services(
        models=models,
        board=board,
        engine_weather=EngineWeather(ctx, state=state, transition=transition, running=running),
        disk_weather=DiskWeather(state=state, transition=transition),
        agent_log=RotatingLog(
            ctx.instance.agent_log, max_bytes=logs.agent_log_max_mb * 2**20, keep=logs.agent_log_keep
        ),
    )


def open_gatekeeper(ctx: LoopContext, *, image: str, engine_wait: EngineWait) -> Gatekeeper:
    """The gate on the instance's repository; only once its lock is held."""
    return Gatekeeper(
        ctx.instance.repo,
        engine=ctx.engine,
        journal_root=ctx.instance.journal,
        image=image,
        instance=ctx.instance.instance_id,
        engine_wait=engine_wait,
    )


@dataclass(frozen=True)
class Parts:
    """What reads and writes the repository, made once its lock is held and the engine answers."""

    gatekeeper: Gatekeeper
    agent: AgentProcess
    reporter: Reporter
    lifecycle: AgentLifecycle
    intake: Intake
    flow: ProposalFlow
    tasks: TaskFlow
    fleet: FleetNode | None  # with `[fleet] database`: this supervisor as a node of the fleet
    task_steps: TaskSteps  # how the loop runs the task flow (a fleet database's outage pauses it)
    analyst: TaskAnalyst | None  # a fleet node's answers to `fleet analyse` (a thread beside the loop)


def parts(
    ctx: LoopContext,
    gatekeeper: Gatekeeper,
    *,
    image: str,
    services: Services,
    on_agent_exit: ExitSink,
    tally: Tally,
    stopping: Callable[[], bool],
) -> Parts:
    """`on_agent_exit`: where the agent's exits go (the event loop's queue); `stopping`: a stop was
    asked for or the run is done."""
    instance = ctx.instance
    area = TaskArea(instance.task_work, instance.run_dir / "task")
    agent = AgentProcess(
        ctx, image=image, gatekeeper=gatekeeper, log=services.agent_log, on_exit=on_agent_exit, task_area=area
    )
    reporter = Reporter(gatekeeper=gatekeeper)
    lifecycle = AgentLifecycle(
        ctx,
        gatekeeper=gatekeeper,
        agent=agent,
        engine_weather=services.engine_weather,
        route=lambda: services.models.route,
    )
    intake = Intake(
        gatekeeper=gatekeeper,
        folder=ctx.instance.outbox,
        refused=reporter.refused,
        workspace=lambda: agent.candidate,
        gate=ctx.config.agent.proposals == "gate",
    )
    flow = ProposalFlow(gatekeeper=gatekeeper, agent=agent, intake=intake, tally=tally, stopping=stopping)
    queue, holding, node = task_queue(ctx, charge=services.models.charge_project)
    tasks = TaskFlow(
        ctx,
        queue=queue,
        registry=ProjectRegistry(instance.projects),
        area=area,
        judge=TaskJudge(
            ctx.engine,
            scratch=instance.state / "task-scratch",
            instance=instance.instance_id,
            cache=instance.state / "task-baselines",
            agent_image=lambda: image,
        ),
        decisions=gatekeeper.log,
        note=reporter.note,
        tokens=services.models.tokens_served,
        generation=lambda: lifecycle.generation,
        holding=holding,
        deliver=delivery_for(ctx),
    )
    steps = TaskSteps(tasks, node, instance.outbox)
    analyst = fleet_analyst(ctx, queue, node, services.models) if node is not None else None
    return Parts(gatekeeper, agent, reporter, lifecycle, intake, flow, tasks, node, steps, analyst)


def fleet_analyst(ctx: LoopContext, queue: TaskQueue, node: FleetNode, models: ModelService) -> TaskAnalyst | None:
    """The node's analyst, on the node's own pool and route; None when it has no model to ask."""
    from supervisor.loop.task_analyst import TaskAnalyst
    from supervisor.store.tasks.pg_queue import PostgresTaskQueue

    settings = ctx.config.fleet
    model = settings.analysis.model or ctx.config.agent.model or next(iter(ctx.config.route.policy.models), None)
    if not isinstance(queue, PostgresTaskQueue) or model is None:
        log.warning("fleet analysis is off on this node: set [fleet.analysis] model or [agent] model")
        return None
    return TaskAnalyst(
        queue.db,
        node=node.name,
        route=lambda: models.route,
        model=model,
        settings=settings.analysis,
        weights=settings.weights,
    )


def task_queue(
    ctx: LoopContext, *, charge: Callable[[str | None], None]
) -> tuple[TaskQueue, Holding, FleetNode | None]:
    """The embedded queue; or, with `[fleet] database`, the fleet's, this node's identity and lease.

    A fleet database that does not answer at start, or whose schema this node does not know, stops
    the start with what to do (docs/fleet.md); once running, an outage only pauses claims.
    """
    settings = ctx.config.fleet
    if not settings.enabled:
        return open_queue(ctx.instance.tasks_db), Holding(worker=ctx.instance.instance_id), None
    from supervisor.loop.fleet_node import FleetNode
    from supervisor.store.fleet_settings import open_database
    from supervisor.store.tasks.pg_queue import PostgresTaskQueue
    from supervisor.work.results_remote import share_result

    # The loop's pool: the event loop, the lease keeper while a task is judged, and the analyst, each
    # one short transaction at a time. Waiting longer than one connect attempt only holds the loop
    # (30 s per call) while the server is gone.
    loop_wait = min(settings.pool_wait_s, settings.connect_timeout_s + 1.0)
    database = open_database(settings.model_copy(update={"pool_wait_s": loop_wait}), ctx.instance.home)
    queue = PostgresTaskQueue(database, owns_database=True)  # checks the schema: SchemaMismatch says what to run
    name = settings.node_name(ctx.instance.home)
    node = FleetNode(database, name=name, home=str(ctx.instance.home), heartbeat_s=settings.heartbeat_s)
    try:
        node.start()  # registered before anything runs: a live node of the same name stops this start
    except BaseException:
        queue.close()
        raise
    remote = settings.results_remote
    holding = Holding(
        worker=name,
        lease_s=settings.lease_s,
        renew_s=settings.heartbeat_s,
        may_claim=node.may_claim,
        share=(lambda mirror, ref, commit: share_result(mirror, ref, commit, remote)) if remote else None,
        charge=charge,
    )
    return queue, holding, node
