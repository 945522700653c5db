"""Prometheus metrics of one instance, from the scorecard store and status.json, per scrape.

A custom collector rather than live counters: the figures come from the supervisor's durable
records (the decision log and the ledger, consumed incrementally by the scorecard), so they are
the same after a restart and equal what `supervisor log` and `supervisor budget` say.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from supervisor.base.generation_number import generation_number_or_none
from supervisor.store.scorecard.store import GATE_BUCKETS

if TYPE_CHECKING:
    from supervisor.console.fleet_page import FleetView
    from supervisor.console.view import InstanceView

STATES = ("starting", "running", "gating", "idle", "stopping", "stopped")


class InstanceCollector(Collector):
    def __init__(self, view: InstanceView) -> None:
        self.view = view

    def collect(self) -> Iterator[Metric]:
        snapshot = self.view.store.snapshot()
        counters, meta = snapshot["counters"], snapshot["meta"]
        yield from self._state(meta)
        yield _counter(
            "ouroboros_rollbacks", "Rollbacks of main (automatic and by the operator).", counters, "rollbacks"
        )
        yield _counter(
            "ouroboros_agent_crashes", "Agent container exits the supervisor counted as crashes.", counters, "crashes"
        )
        yield _labelled("ouroboros_proposals", "Proposals judged, by verdict.", counters, "verdicts|", ["verdict"])
        yield _labelled(
            "ouroboros_decisions",
            "Decision-log records, by kind (agent-started counts restarts).",
            counters,
            "decisions|",
            ["kind"],
        )
        yield _histogram(counters)
        yield _labelled(
            "ouroboros_tasks",
            "Task verdicts the queue took, by outcome (infrastructure is never the agent's).",
            counters,
            "tasks|",
            ["outcome"],
        )
        yield _counter(
            "ouroboros_task_tokens",
            "Tokens of the task attempts judged passed, failed or gave-up.",
            counters,
            "task_tokens",
        )
        yield _counter(
            "ouroboros_task_regressions",
            "Tests that passed on a task's base and failed after its failed attempts.",
            counters,
            "task_regressions",
        )
        # The agent names the model of each request; labelled by the pricing entry it matched, the
        # series stay as few as the operator's pricing table, whatever names the agent invents.
        price_of = _pricing_names(self.view)
        yield _labelled(
            "ouroboros_llm_tokens",
            "Tokens metered by the LLM route, by kind and priced model.",
            counters,
            "tokens|",
            ["kind", "model"],
            lambda values: [values[0], price_of(values[1])],
        )
        yield _labelled(
            "ouroboros_llm_usd",
            "US dollars metered by the LLM route, by priced model.",
            counters,
            "usd|",
            ["model"],
            lambda values: [price_of(values[0])],
        )
        yield _labelled(
            "ouroboros_route_requests",
            "Requests the route forwarded and metered, by upstream status.",
            counters,
            "requests|",
            ["status"],
        )
        refusals = CounterMetricFamily(
            "ouroboros_route_refusals",
            "Requests the route answered itself instead of forwarding, by error type, since the supervisor started.",
            labels=["reason"],
        )
        status = self.view.status()
        for reason, count in sorted((status.route_refusals if status else {}).items()):
            refusals.add_metric([reason], float(count))
        yield refusals
        yield _labelled(
            "ouroboros_route_refusals_logged",
            "Route refusals in the decision log, by reason (logged at most once a minute per reason).",
            counters,
            "route_refusals|",
            ["reason"],
        )
        caps = GaugeMetricFamily(
            "ouroboros_cap_usage_ratio", "Spend over cap, for each configured cap.", labels=["scope", "unit"]
        )
        for cap in self.view.caps(snapshot):
            caps.add_metric([cap.scope, cap.unit], cap.fraction)
        yield caps
        yield GaugeMetricFamily(
            "ouroboros_decision_chain_ok",
            "1 while every decision-log link checked holds.",
            value=1 if meta.get("chain_ok", "1") == "1" else 0,
        )

    def _state(self, meta: dict[str, str]) -> Iterator[Metric]:
        status = self.view.status()
        main = generation_number_or_none(meta.get("main_gen", ""))
        yield GaugeMetricFamily(
            "ouroboros_generation", "The generation main points at.", value=main if main is not None else -1
        )
        state = GaugeMetricFamily(
            "ouroboros_state", "The supervisor's state (1 for the current one).", labels=["state"]
        )
        current = self.view.shown(status).state if status else "stopped"
        for name in sorted(set(STATES) | {current}):
            state.add_metric([name], 1 if name == current else 0)
        yield state
        yield GaugeMetricFamily(
            "ouroboros_agent_restarts",
            "Agent restarts in the current supervisor run.",
            value=status.restarts if status else 0,
        )


def _counter(name: str, doc: str, counters: dict[str, Any], key: str) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=float(counters.get(key, 0)))


def _labelled(
    name: str,
    doc: str,
    counters: dict[str, Any],
    prefix: str,
    labels: list[str],
    relabel: Callable[[list[str]], list[str]] = lambda values: values,
) -> CounterMetricFamily:
    sums: dict[tuple[str, ...], float] = {}
    for key, value in counters.items():
        if key.startswith(prefix):
            values = key[len(prefix) :].split("|")
            if len(values) == len(labels):
                merged = tuple(relabel(values))
                sums[merged] = sums.get(merged, 0.0) + float(value)
    family = CounterMetricFamily(name, doc, labels=labels)
    for merged_values, total in sorted(sums.items()):
        family.add_metric(list(merged_values), total)
    return family


def _pricing_names(view: InstanceView) -> Callable[[str], str]:
    names = list(view.config().route.pricing.models)

    def price_of(model: str) -> str:
        if model in names:
            return model
        prefixes = [name for name in names if model.startswith(name)]
        return max(prefixes, key=len) if prefixes else "other"

    return price_of


def _histogram(counters: dict[str, Any]) -> HistogramMetricFamily:
    buckets = [(f"{bound:g}", float(counters.get(f"gate_bucket|{bound:g}", 0))) for bound in GATE_BUCKETS]
    buckets.append(("+Inf", float(counters.get("gate_bucket|+Inf", 0))))
    return HistogramMetricFamily(
        "ouroboros_gate_duration_seconds",
        "Time the gate took per judged proposal.",
        buckets=buckets,
        sum_value=float(counters.get("gate_sum", 0)),
    )


class FleetCollector(Collector):
    """The fleet's nodes and queue (supervisor/console/fleet_page.py), when [fleet] is configured."""

    def __init__(self, fleet: FleetView) -> None:
        self.fleet = fleet

    def collect(self) -> Iterator[Metric]:
        from supervisor.console.fleet_page import fleet_metrics

        yield from fleet_metrics(self.fleet)


def render(view: InstanceView, fleet: FleetView | None = None) -> tuple[bytes, str]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(InstanceCollector(view))
    if fleet is not None:
        registry.register(FleetCollector(fleet))
    return generate_latest(registry), CONTENT_TYPE_LATEST
