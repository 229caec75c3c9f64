"""LayerChoice: stepping down at once, up one layer at a time after a hold that grows."""

from __future__ import annotations

import pytest

from gateway.media.layer_choice import (
    FAILED_WITHIN_S,
    HOLD_S,
    MAX_HOLD_S,
    PAUSE_AFTER_S,
    PAUSE_MARGIN,
    PROBE_REACH,
    SETTLE_S,
    STABLE_S,
    LayerChoice,
)
from tests.support.fake_clock import Clock

RATES = [150_000.0, 500_000.0, 1_500_000.0]
PLENTY = 100_000_000.0


def started(level: int | None = 2) -> tuple[Clock, LayerChoice]:
    """A choice on RATES, brought to ``level`` once the start settled."""
    clock = Clock()
    choice = LayerChoice(clock)
    choice.choose(RATES, 0.0)
    clock.advance(SETTLE_S)
    budget = 0.0 if level is None else RATES[level]
    if level is None:  # the smallest first, until the shortfall lasted
        assert choice.choose(RATES, budget) == 0
        clock.advance(PAUSE_AFTER_S)
    assert choice.choose(RATES, budget) == level
    return clock, choice


def test_starts_at_the_top_whatever_the_budget() -> None:
    choice = LayerChoice(Clock())
    assert (choice.level, choice.paused, choice.started) == (None, False, False)
    assert choice.choose([], 1.0) is None  # no ladder yet: not started
    assert choice.started is False
    assert choice.choose(RATES, 1.0) == 2
    assert (choice.paused, choice.switches, choice.pauses) == (False, 0, 0)


def test_a_step_down_waits_until_the_last_change_settled() -> None:
    clock = Clock()
    choice = LayerChoice(clock)
    choice.choose(RATES, PLENTY)
    clock.advance(SETTLE_S - 0.01)
    assert choice.choose(RATES, 600_000) == 2
    clock.advance(0.01)
    assert choice.choose(RATES, 600_000) == 1
    assert choice.choose(RATES, 200_000) == 1  # the step down itself is a change
    clock.advance(SETTLE_S)
    assert choice.choose(RATES, 200_000) == 0
    assert choice.switches == 2


@pytest.mark.parametrize(
    ("budget", "level"), [(1_500_000, 2), (1_499_999, 1), (500_000, 1), (499_999, 0)]
)
def test_steps_down_to_the_largest_layer_that_fits(budget: float, level: int) -> None:
    _, choice = started()
    assert choice.choose(RATES, budget) == level
    assert choice.switches == (0 if level == 2 else 1)


def test_keeps_the_smallest_layer_while_it_nearly_fits_then_pauses() -> None:
    assert PAUSE_MARGIN == 4 / 3  # 150 kbps is kept down to a 112.5 kbps budget
    clock, choice = started()
    assert choice.choose(RATES, 113_000) == 0
    clock.advance(SETTLE_S)
    assert choice.choose(RATES, 113_000) == 0
    assert choice.choose(RATES, 112_000) == 0  # short only now: not yet
    clock.advance(PAUSE_AFTER_S - 0.1)
    assert choice.choose(RATES, 112_000) == 0
    clock.advance(0.1)
    assert choice.choose(RATES, 112_000) is None
    assert choice.paused
    assert (choice.pauses, choice.switches) == (1, 1)
    assert started(None)[1].pauses == 1  # from the top, too


def test_a_shortfall_that_ends_is_no_pause() -> None:
    clock, choice = started(0)
    assert choice.choose(RATES, 50_000) == 0
    clock.advance(PAUSE_AFTER_S - 0.5)
    assert choice.choose(RATES, 120_000) == 0  # fits the margin again: the count restarts
    clock.advance(1.0)
    assert choice.choose(RATES, 50_000) == 0
    assert choice.pauses == 0


def test_steps_up_one_layer_at_a_time_after_the_hold() -> None:
    clock, choice = started(0)
    clock.advance(HOLD_S - 0.01)
    assert choice.choose(RATES, PLENTY) == 0
    clock.advance(0.01)
    assert choice.choose(RATES, PLENTY) == 1  # not straight to 2
    clock.advance(HOLD_S - 0.01)
    assert choice.choose(RATES, PLENTY) == 1  # the hold counts from the last change
    clock.advance(0.01)
    assert choice.choose(RATES, PLENTY) == 2
    assert choice.switches == 3


def test_steps_up_only_when_the_next_layer_fits_in_seven_eighths() -> None:
    clock, choice = started(0)
    clock.advance(HOLD_S)
    assert choice.choose(RATES, 571_428) == 0  # 7/8 of it: 499,999.5
    assert choice.choose(RATES, 571_429) == 1


def test_resumes_from_a_pause_at_the_smallest_layer() -> None:
    clock, choice = started(None)
    clock.advance(HOLD_S)
    assert choice.choose(RATES, 150_000) is None  # fits, but not in 7/8
    assert choice.choose(RATES, PLENTY) == 0
    assert choice.paused is False
    assert (choice.pauses, choice.switches) == (1, 1)  # top -> smallest -> pause -> smallest


def test_a_failed_step_up_doubles_the_hold() -> None:
    clock, choice = started(0)
    holds = []
    for _ in range(4):
        clock.advance(choice.hold_s)
        assert choice.choose(RATES, 1_000_000) == 1
        clock.advance(FAILED_WITHIN_S - 0.1)
        assert choice.choose(RATES, 400_000) == 0
        holds.append(choice.hold_s)
    assert holds == [4.0, 8.0, 16.0, MAX_HOLD_S]
    assert choice.failed_steps == 4
    # The doubled hold applies: not up before it has passed, then up.
    clock.advance(MAX_HOLD_S - 0.1)
    assert choice.choose(RATES, 1_000_000) == 0
    clock.advance(0.1)
    assert choice.choose(RATES, 1_000_000) == 1


def test_a_step_down_long_after_a_step_up_is_no_failure() -> None:
    clock, choice = started(0)
    clock.advance(HOLD_S)
    assert choice.choose(RATES, 1_000_000) == 1
    clock.advance(FAILED_WITHIN_S)
    assert choice.choose(RATES, 400_000) == 0
    assert (choice.failed_steps, choice.hold_s) == (0, HOLD_S)


def test_a_pause_soon_after_resuming_is_a_failed_step() -> None:
    clock, choice = started(None)
    clock.advance(HOLD_S)
    assert choice.choose(RATES, PLENTY) == 0
    clock.advance(SETTLE_S)
    assert choice.choose(RATES, 100_000) == 0
    clock.advance(PAUSE_AFTER_S)
    assert choice.choose(RATES, 100_000) is None
    assert (choice.failed_steps, choice.hold_s, choice.pauses) == (1, 2 * HOLD_S, 2)


def test_stable_s_without_a_change_resets_the_hold() -> None:
    clock, choice = started(0)
    clock.advance(HOLD_S)
    choice.choose(RATES, 1_000_000)
    clock.advance(SETTLE_S)
    assert choice.choose(RATES, 400_000) == 0
    assert choice.hold_s == 2 * HOLD_S
    clock.advance(STABLE_S - 0.1)
    choice.choose(RATES, 400_000)
    assert choice.hold_s == 2 * HOLD_S
    clock.advance(0.1)
    assert choice.choose(RATES, 400_000) == 0
    assert choice.hold_s == HOLD_S


def test_a_shorter_ladder_moves_to_its_top_at_once() -> None:
    clock, choice = started()
    assert choice.choose(RATES[:2], PLENTY) == 1  # no settling wait
    assert choice.choose(RATES[:1], PLENTY) == 0
    assert choice.switches == 2
    # A longer one again: climbed one step at a time, after the hold.
    assert choice.choose(RATES, PLENTY) == 0
    clock.advance(HOLD_S)
    assert choice.choose(RATES, PLENTY) == 1


def test_an_unknown_rate_is_taken_to_fit() -> None:
    clock, choice = started()
    assert choice.choose([150_000, 0, 1_500_000], 300_000) == 1
    clock.advance(HOLD_S)
    assert choice.choose([150_000, 0, 0], 1.0) == 2  # up to an unknown rate, too
    assert choice.choose([0, 0, 0], 0.0) == 2


def test_a_lower_cap_soon_after_a_step_up_is_no_failure() -> None:
    clock, choice = started(0)
    clock.advance(HOLD_S)
    assert choice.choose(RATES, 1_000_000) == 1
    clock.advance(1.0)
    assert choice.choose(RATES[:1], PLENTY) == 0  # the viewer asked for less
    assert (choice.failed_steps, choice.hold_s) == (0, HOLD_S)


def test_with_probing_a_step_up_waits_for_the_probe_and_a_failed_one_doubles_the_hold() -> None:
    clock, choice = started(0)
    choice.probing = True
    clock.advance(HOLD_S)
    assert choice.choose(RATES, PLENTY) == 0  # due, but probed first
    assert (choice.probe, choice.probes) == (1, 1)
    assert choice.choose(RATES, PLENTY) == 0 and choice.probes == 1  # one probe at a time
    choice.probed(False)  # the link did not carry it
    assert (choice.level, choice.probe, choice.failed_steps, choice.hold_s) == (
        0,
        None,
        1,
        2 * HOLD_S,
    )
    clock.advance(HOLD_S)
    assert choice.choose(RATES, PLENTY) == 0 and choice.probe is None  # the longer hold
    clock.advance(HOLD_S)
    choice.choose(RATES, PLENTY)
    assert choice.probe == 1
    choice.probed(True)
    assert (choice.level, choice.switches, choice.probe) == (1, 2, None)  # 2 -> 0 -> 1


def test_a_probe_is_dropped_when_the_current_layer_no_longer_fits() -> None:
    clock, choice = started(1)
    choice.probing = True
    clock.advance(HOLD_S)
    choice.choose(RATES, PLENTY)
    assert choice.probe == 2
    clock.advance(SETTLE_S)
    assert choice.choose(RATES, RATES[0]) == 0 and choice.probe is None
    choice.probed(True)  # a late verdict on a dropped probe changes nothing
    assert choice.level == 0


def test_a_probe_is_tried_for_a_layer_up_to_twice_the_budget() -> None:
    assert PROBE_REACH == 2.0
    clock, choice = started(0)
    choice.probing = True
    clock.advance(HOLD_S)
    assert choice.choose(RATES, 249_000) == 0 and choice.probe is None  # 500k > 2 x 249k
    assert choice.choose(RATES, 250_000) == 0 and choice.probe == 1  # far from 7/8: tried
    choice.probed(True)
    assert choice.level == 1
