"""The nine-step cycle: read goals, select, plan, execute, journal, reflect, self-modify, journal, repeat."""

from __future__ import annotations

import re
import threading
import uuid
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from agent.config import AgentConfig
from agent.context import build_memory
from agent.conversation import Action, Conversation, StepOutcome, describe_actions
from agent.errors import BudgetExhaustedError, LLMError, ScenarioExhaustedError
from agent.goals import Goal, GoalBook
from agent.journal import Journal, timestamp, utc_now
from agent.llm import LLMClient
from agent.prompts import (
    EXECUTE_PROMPT,
    REFLECT_PROMPT,
    SELF_MODIFY_PROMPT,
    SYSTEM_PROMPT,
    plan_prompt,
    reflect_only_prompt,
)
from agent.registry import ToolContext, ToolRegistry
from agent.source_guard import SourceSnapshot
from agent.task import AssignedTask, read_task, write_task_result
from agent.usage import Usage

_STATUS = re.compile(r"GOAL STATUS:\s*(complete|incomplete)", re.IGNORECASE)
_PROPOSAL_ID = re.compile(r"proposal ([0-9a-f]{32}) written")
REFLECTION_SECTIONS = ("Summary", "Lessons learned", "Improvement recommendations")


class CycleReport(BaseModel):
    """What one cycle did; the journal entries are rendered from it."""

    model_config = ConfigDict(extra="forbid")

    goal: str
    completed: bool = False
    plan: str = ""
    result: str = ""
    actions: list[Action] = Field(default_factory=list)
    restored_source: list[str] = Field(default_factory=list)
    reflection: str = ""
    self_modification: str = ""
    proposals: list[str] = Field(default_factory=list)
    task_result: str | None = Field(default=None, description="id of the task-result message written")
    usage: Usage = Field(default_factory=Usage)
    stopped: bool = False


def reflection_sections(text: str) -> str:
    """The reflection with exactly the three required sections (missing ones marked as such)."""
    found = {}
    for i, name in enumerate(REFLECTION_SECTIONS):
        later = "|".join(re.escape(n) for n in REFLECTION_SECTIONS[i + 1 :]) or r"(?!x)x"
        match = re.search(
            rf"^#+ *{re.escape(name)}\s*$(.*?)(?=^#+ *(?:{later})\s*$|\Z)",
            text,
            re.MULTILINE | re.DOTALL | re.IGNORECASE,
        )
        found[name] = match.group(1).strip() if match else ""
    if not any(found.values()):
        found["Summary"] = text.strip()
    return "\n\n".join(f"### {name}\n\n{found[name] or '(not given)'}" for name in REFLECTION_SECTIONS)


def proposal_ids(actions: list[Action]) -> list[str]:
    """Ids of the proposals the successful `propose` calls wrote."""
    found = (_PROPOSAL_ID.search(a.output) for a in actions if a.tool == "propose" and a.ok)
    return [m.group(1) for m in found if m]


class Agent:
    def __init__(
        self, config: AgentConfig, llm: LLMClient, registry: ToolRegistry, stop: threading.Event | None = None
    ) -> None:
        self.config = config
        self.llm = llm
        self.registry = registry
        self.stop = stop or threading.Event()
        self.journal = Journal(config.journal_dir)
        self.goals = GoalBook(config.goals_dir)
        self.reported: set[int] = set()  # tasks this run said were done (the supervisor takes the file away)

    def _conversation(self, task: AssignedTask | None = None) -> Conversation:
        ctx = ToolContext(
            workspace=Path(task.path) if task else self.config.workspace,
            guards_source=task is None,
            outbox=self.config.outbox,
            stop=self.stop,
            command_timeout_s=self.config.command_timeout_s,
            output_cap=self.config.output_cap,
        )
        return Conversation(self.llm, self.registry, ctx, SYSTEM_PROMPT, self.config.max_turns, self.stop)

    def run(self, max_cycles: int | None = None) -> int:
        """Cycle until stopped (SIGTERM sets `stop`) or `max_cycles` is reached; returns cycles run.

        A cycle the model could not serve (LLMError, after the SDK's own retries) is journaled and
        retried after a growing pause; `max_llm_failures` in a row end the run with that error.
        """
        done, failures = 0, 0
        while not self.stop.is_set() and (max_cycles is None or done < max_cycles):
            try:
                self.cycle()
                failures = 0
            except ScenarioExhaustedError as e:
                # A scripted run that has said everything ends here, quietly: idle until stopped.
                self.journal.append(
                    "notes", "scenario-ended", f"**The scripted scenario has ended; idling until stopped:** {e}"
                )
                self.stop.wait()
                break
            except BudgetExhaustedError as e:
                # A cap is the operator's decision, not a failure: idle until it lifts, never crash-loop.
                self.journal.append("notes", "budget", f"**Spending cap reached; idling {e.retry_after_s:.0f} s:** {e}")
                self.stop.wait(min(e.retry_after_s, self.config.budget_wait_max_s))
                continue
            except LLMError as e:
                failures += 1
                self.journal.append("notes", "error", f"**LLM failure {failures} in a row:** {e}")
                if failures >= self.config.max_llm_failures:
                    raise
                self.stop.wait(self.config.error_backoff_s * 2 ** (failures - 1))
            done += 1
        return done

    def cycle(self) -> CycleReport:
        self.llm.cycle_id = uuid.uuid4().hex[:16]
        task = read_task(self.config.task_file)
        if task is not None and task.id in self.reported:
            task = None
        goal = task.goal() if task else self.goals.select()  # steps 1-2: a given task comes first
        memory = build_memory(self.journal.entries(), self.config.context)
        talk = self._conversation(task)
        report = CycleReport(goal=goal.title)
        plan = talk.step(plan_prompt(memory, goal), "execute", allow_tools=False)  # step 3
        report.plan, report.usage = plan.text, plan.usage
        if not self.stop.is_set():
            self._execute(talk, report)  # step 4
        report.stopped = self.stop.is_set()
        if task is not None and report.completed:
            report.task_result = write_task_result(self.config.outbox, task.id, report.result).id
            self.reported.add(task.id)
        self._journal_cycle(goal, report, task)  # step 5
        if report.stopped:
            return report
        if task is not None:  # reflection and self-modification work on the agent's own tree again
            talk.work_in(self.config.workspace, guards_source=True)
        self._reflect_and_modify(talk, report, REFLECT_PROMPT)  # steps 6-8
        return report

    def reflect(self) -> CycleReport:
        """Reflection and self-modification on the recent journal, without a task."""
        self.llm.cycle_id = uuid.uuid4().hex[:16]
        memory = build_memory(self.journal.entries(), self.config.context)
        report = CycleReport(goal="(reflection only)")
        self._reflect_and_modify(self._conversation(), report, reflect_only_prompt(memory))
        return report

    def _execute(self, talk: Conversation, report: CycleReport) -> None:
        snapshot = SourceSnapshot(self.config.workspace)
        try:
            outcome = talk.step(EXECUTE_PROMPT, "execute")
        finally:
            report.restored_source = snapshot.restore()
        report.actions, report.usage = outcome.actions, report.usage + outcome.usage
        status = _STATUS.findall(outcome.text)
        report.completed = bool(status) and status[-1].lower() == "complete" and outcome.ended == "end_turn"
        result = _STATUS.sub("", outcome.text).strip() or "(no result)"
        report.result = result if outcome.ended == "end_turn" else f"{result}\n\n(step ended: {outcome.ended})"

    def _journal_cycle(self, goal: Goal, report: CycleReport, task: AssignedTask | None = None) -> None:
        status = "stopped" if report.stopped else "complete" if report.completed else "incomplete"
        body = (
            f"**Goal:** {goal.title}\n\n**Status:** {status}\n\n**Tokens:** {report.usage.line()}\n\n"
            f"### Plan\n\n{report.plan or '(none)'}\n\n### Actions\n\n{describe_actions(report.actions)}\n\n"
            f"### Result\n\n{report.result or '(none)'}"
        )
        if report.restored_source:
            body += "\n\n### Restored\n\nSource changed during execution was put back: " + ", ".join(
                report.restored_source
            )
        if report.task_result:
            body += f"\n\n### Task result\n\nReported task {task.id if task else '?'} done (message {report.task_result}); the supervisor judges it."
        self.journal.append("notes", "cycle", body, usage=report.usage, data={"goal": goal.title, "status": status})
        if report.completed and not goal.self_improvement and task is None:
            self.goals.complete(goal, report.result, timestamp(utc_now()))

    def _reflect_and_modify(self, talk: Conversation, report: CycleReport, reflect_prompt: str) -> None:
        reflection = talk.step(reflect_prompt, "execute", allow_tools=False)
        report.reflection = reflection_sections(reflection.text)
        usage = reflection.usage
        modify: StepOutcome | None = None
        if not self.stop.is_set():
            modify = talk.step(SELF_MODIFY_PROMPT, "reflect")
            usage = usage + modify.usage
            report.proposals = proposal_ids(modify.actions)
            report.self_modification = modify.text or f"(step ended: {modify.ended})"
        report.usage = report.usage + usage
        self._journal_reflection(report, modify, usage)

    def _journal_reflection(self, report: CycleReport, modify: StepOutcome | None, usage: Usage) -> None:
        proposed = ", ".join(report.proposals) or "none"
        actions = describe_actions(modify.actions) if modify else "- (skipped: stop requested)"
        body = (
            f"**Goal:** {report.goal}\n\n**Tokens:** {usage.line()}\n\n**Cycle tokens:** {report.usage.line()}\n\n"
            f"{report.reflection}\n\n### Self-modification\n\n**Proposals:** {proposed}\n\n{actions}\n\n"
            f"{report.self_modification or ''}"
        ).strip()
        self.journal.append(
            "reflections",
            "reflection",
            body,
            usage=usage,
            data={"goal": report.goal, "proposals": report.proposals, "cycle_usage": report.usage.model_dump()},
        )
