"""supervisor/base/backoff.py: the one back-off gives the same pauses the hand-written ones gave."""

from __future__ import annotations

from itertools import islice

import pytest

from supervisor.base.backoff import Backoff
from supervisor.gate.outages import ENGINE_BACKOFF, infra_backoff_s
from supervisor.loop.probation import Probation
from supervisor.store.instance import ProbationSettings


def test_pauses_double_up_to_the_ceiling_and_stay_there() -> None:
    backoff = Backoff(0.5, 10.0)
    assert list(islice(backoff.delays(), 8)) == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    assert [backoff.delay(n) for n in range(8)] == list(islice(backoff.delays(), 8))


def test_a_factor_other_than_two() -> None:
    assert list(islice(Backoff(1.0, 100.0, factor=3.0).delays(), 6)) == [1.0, 3.0, 9.0, 27.0, 81.0, 100.0]
    assert list(islice(Backoff(2.0, 100.0, factor=1.0).delays(), 3)) == [2.0, 2.0, 2.0]


def test_edge_pauses_zero_and_a_ceiling_below_the_first() -> None:
    assert Backoff(0.0, 60.0).delay(10**9) == 0.0  # returns at once: it never grows
    assert Backoff(90.0, 60.0).delay(0) == 60.0
    assert Backoff(1.0, 60.0).delay(10**9) == 60.0  # no overflow, no long loop


def test_each_iterator_starts_over() -> None:
    backoff = Backoff(1.0, 4.0)
    first = backoff.delays()
    assert [next(first), next(first)] == [1.0, 2.0]
    assert next(backoff.delays()) == 1.0


@pytest.mark.parametrize(("initial", "ceiling", "factor"), [(-1.0, 1.0, 2.0), (1.0, -1.0, 2.0), (1.0, 2.0, 0.5)])
def test_a_negative_or_shrinking_backoff_is_refused(initial: float, ceiling: float, factor: float) -> None:
    with pytest.raises(ValueError):
        Backoff(initial, ceiling, factor)
    with pytest.raises(ValueError):
        Backoff(1.0, 2.0).delay(-1)


def test_the_gate_engine_retry_keeps_its_numbers() -> None:
    assert [infra_backoff_s(tries) for tries in range(1, 7)] == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]
    assert list(islice(ENGINE_BACKOFF.delays(), 7)) == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


@pytest.mark.parametrize("restart_delay_s", [0.0, 0.001, 0.2, 7.0, 90.0])
def test_the_restart_delay_of_a_good_generation_keeps_its_numbers(restart_delay_s: float) -> None:
    settings = ProbationSettings(restart_delay_s=restart_delay_s)
    probation = Probation(settings, started_at=0.0, good=True)
    for crashes in range(15):
        expected = min(60.0, restart_delay_s * 2 ** min(crashes, 10))  # the formula it replaced
        assert probation.restart_delay() == expected
        probation.recent.append(float(crashes))
