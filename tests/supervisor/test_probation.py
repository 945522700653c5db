"""Restart intensity: pure logic, the clock passed in."""

from supervisor.loop.probation import Action, Probation
from supervisor.store.instance import ProbationSettings

SETTINGS = ProbationSettings(max_restarts=5, window_s=10, probation_s=60, max_consecutive_rollbacks=3)


def test_five_crashes_in_ten_seconds_are_tolerated_the_sixth_rolls_back():
    probation = Probation(SETTINGS, started_at=0)
    actions = [probation.on_crash(now) for now in (1, 2, 3, 4, 5, 6)]
    assert actions == [Action.RESTART] * 5 + [Action.ROLLBACK]


def test_crashes_spread_wider_than_the_window_never_roll_back():
    probation = Probation(SETTINGS, started_at=0)
    assert {probation.on_crash(now * 3.0) for now in range(1, 30)} == {Action.RESTART}


def test_generation_is_marked_good_once_after_its_probation():
    probation = Probation(SETTINGS, started_at=100)
    assert not probation.passed(159)
    assert probation.passed(160)
    assert not probation.passed(161)


def test_a_good_generation_is_restarted_with_backoff_not_rolled_back():
    probation = Probation(SETTINGS, started_at=0)
    probation.passed(60)
    actions = {probation.on_crash(61 + i * 0.1) for i in range(20)}
    assert actions == {Action.RESTART}
    assert 0.2 < probation.restart_delay() <= 60


def test_consecutive_rollbacks_are_capped_then_the_supervisor_gives_up():
    probation = Probation(SETTINGS, started_at=0)
    outcomes = []
    for round_ in range(4):
        now = round_ * 100.0
        action = Action.RESTART
        while action is Action.RESTART:
            now += 0.5
            action = probation.on_crash(now)
        outcomes.append(action)
        probation = probation.next_generation(now, after_rollback=True)
    assert outcomes == [Action.ROLLBACK] * 3 + [Action.GIVE_UP]


def test_a_generation_that_proves_good_resets_the_rollback_count():
    probation = Probation(SETTINGS, started_at=0, consecutive_rollbacks=2)
    probation.passed(60)
    nxt = probation.next_generation(61, after_rollback=False)
    assert nxt.consecutive_rollbacks == 0


def test_the_backoff_of_a_good_generation_grows_to_a_minute_even_though_it_spaces_crashes_out():
    probation = Probation(SETTINGS, started_at=0)
    probation.passed(60)
    now, delays = 61.0, []
    for _ in range(12):
        assert probation.on_crash(now) is Action.RESTART
        delays.append(probation.restart_delay())
        now += delays[-1] + 1.0  # the agent runs a second, then crashes again
    assert delays == sorted(delays) and delays[-1] == 60.0
