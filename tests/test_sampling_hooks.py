import pytest
import torch

from lib_initedit.sampling_hooks import SamplingHooks


class Part:
    def __init__(self, log, name, add=None, fail_enter=False):
        self.log, self.name, self.add, self.fail_enter = log, name, add, fail_enter

    def enter(self):
        if self.fail_enter:
            raise RuntimeError("no")
        self.log.append(("enter", self.name))

    def leave(self, completed):
        self.log.append(("leave", self.name, completed))

    def before_call(self, index, total, rows):
        self.log.append(("before", self.name, index, total))

    def after_call(self, index, total, x):
        return None if self.add is None else x + self.add


def test_parts_run_in_order_and_leave_in_reverse():
    log = []
    hooks = SamplingHooks([Part(log, "a", add=1.0), None, Part(log, "b", add=10.0), object()])
    hooks.enter()
    hooks.before_call(0, 4, None)
    out = hooks.after_call(0, 4, torch.zeros(1))
    hooks.leave(True)
    assert out.item() == 11.0
    assert log == [("enter", "a"), ("enter", "b"), ("before", "a", 0, 4), ("before", "b", 0, 4),
                   ("leave", "b", True), ("leave", "a", True)]


def test_unchanged_prediction_is_none_so_the_host_keeps_its_own_tensor():
    assert SamplingHooks([Part([], "a")]).after_call(0, 1, torch.zeros(1)) is None
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
