import math

import pytest
import torch

from lib_initedit.sampling_hooks import Call, CallClock, SamplingHooks, schedule_position, steps_of_calls


class Part:
    def __init__(self, log, name, add=None, fail_enter=False):
        self.log, self.name, self.add, self.fail_enter = log, name, add, fail_enter

    def enter(self):
        if self.fail_enter:
            raise RuntimeError("no")
        self.log.append(("enter", self.name))

    def leave(self, completed):
        self.log.append(("leave", self.name, completed))

    def before_call(self, call, rows):
        self.log.append(("before", self.name, call.index, call.total))

    def after_call(self, call, x):
        return None if self.add is None else x + self.add


def test_parts_run_in_order_and_leave_in_reverse():
    log = []
    hooks = SamplingHooks([Part(log, "a", add=1.0), None, Part(log, "b", add=10.0), object()])
    hooks.enter()
    hooks.before_call(Call.plain(0, 4), None)
    out = hooks.after_call(Call.plain(0, 4), torch.zeros(1))
    hooks.leave(True)
    assert out.item() == 11.0
    assert log == [("enter", "a"), ("enter", "b"), ("before", "a", 0, 4), ("before", "b", 0, 4),
                   ("leave", "b", True), ("leave", "a", True)]


def test_unchanged_prediction_is_none_so_the_host_keeps_its_own_tensor():
    assert SamplingHooks([Part([], "a")]).after_call(Call.plain(0, 1), torch.zeros(1)) is None
    assert not SamplingHooks([None])


def test_a_failed_enter_leaves_the_parts_that_entered():
    log = []
    hooks = SamplingHooks([Part(log, "a"), Part(log, "b", fail_enter=True)])
    with pytest.raises(RuntimeError):
        hooks.enter()
    assert log == [("enter", "a"), ("leave", "a", False)]


def test_every_part_leaves_even_when_one_raises():
    log = []

    class Bad(Part):
        def leave(self, completed):
            raise KeyboardInterrupt

    hooks = SamplingHooks([Part(log, "a"), Bad(log, "b")])
    with pytest.raises(KeyboardInterrupt):
        hooks.leave(False)
    assert log == [("leave", "a", False)]


# ---------------------------------------------------------------- where a call lies on the step schedule
SIGMAS = [14.6, 7.0, 3.1, 1.2, 0.4, 0.0]  # 5 steps


def _places(calls_at_levels, total=10):
    clock = CallClock(total, 5, SIGMAS)
    return [clock.next(level) for level in calls_at_levels]


def test_first_order_calls_are_placed_at_their_step():
    calls = _places(SIGMAS[:-1])
    assert [c.at for c in calls] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert [c.index for c in calls] == [0, 1, 2, 3, 4] and {(c.total, c.steps) for c in calls} == {(10, 5)}
    assert steps_of_calls([c.at for c in calls], 5) == [0, 1, 2, 3, 4]


def test_heun_places_its_second_call_at_the_next_level_and_both_calls_in_its_step():
    levels = [SIGMAS[0], SIGMAS[1], SIGMAS[1], SIGMAS[2], SIGMAS[2], SIGMAS[3], SIGMAS[3], SIGMAS[4], SIGMAS[4]]
    calls = _places(levels)  # k-diffusion's Heun: the last step (to sigma 0) is an Euler step
    assert [c.at for c in calls] == [0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0]
    assert steps_of_calls([c.at for c in calls], 5) == [0, 0, 1, 1, 2, 2, 3, 3, 4]
    # a second call at the final level belongs to the last step
    assert steps_of_calls([0.0, 1.0, 1.0, 2.0], 2) == [0, 0, 1, 1]


def test_midpoint_samplers_place_the_second_call_between_the_levels():
    levels = []
    for i in range(4):  # DPM2 / DPM++ 2S a / DPM++ SDE: a second call between sigma_i and sigma_i+1
        levels += [SIGMAS[i], math.sqrt(SIGMAS[i] * SIGMAS[i + 1])]
    levels.append(SIGMAS[4])
    calls = _places(levels)
    for i in range(4):
        assert calls[2 * i].at == i and i < calls[2 * i + 1].at < i + 1
    assert steps_of_calls([c.at for c in calls], 5) == [0, 0, 1, 1, 2, 2, 3, 3, 4]


def test_timestep_schedules_in_either_order_and_churn_and_no_schedule():
    ascending = [1, 201, 401, 601, 801]  # A1111's timestep samplers list them ascending and run them backwards
    assert schedule_position(801, ascending) == 0.0 and schedule_position(401, ascending) == 2.0
    assert schedule_position(501, ascending) == pytest.approx(1.5)
    assert schedule_position(20.0, SIGMAS) == 0.0  # above the first level (churn): step 0
    assert [CallClock(3, 3).next(5.0).at for _ in range(1)] == [0.0]
    clock = CallClock(3, 3)  # no schedule: the index stands for the place
    assert [clock.next(level).at for level in (9.0, 4.0, 1.0)] == [0.0, 1.0, 2.0]
