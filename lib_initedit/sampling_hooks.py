"""What runs around and during one batch's sampling, host-agnostic.

A host calls ``enter()`` right before its sampler starts, ``before_call`` / ``after_call`` around every call
of its CFG denoiser (the function that returns the guided prediction the sampler steps with), each with the
call's ``Call`` (a ``CallClock`` makes them), and ``leave(completed)`` afterwards, also on error and
interrupt. The parts are: layout guidance (wraps attention forwards while sampling), keep (the outside of the
rerolled regions follows a base generation) and the recorder (remembers this generation as a base for later
rerolls). Parts are plain objects with any of those four methods; a missing method means "nothing to do".
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch


@dataclass(frozen=True)
class Call:
    """One call of the host's CFG denoiser.

    ``index``: the calls before it in this sampling. ``total``: the calls the host budgets for the sampling
    (A1111's ``total_steps``: twice the steps for second-order samplers), what fractions "of the calls" were
    taken of (``fraction_of`` "calls", infotexts written before it). ``steps``: the sampler's steps.
    ``at``: where on the step schedule the call evaluates the model, in steps: step i's noise level is i, the
    second call of a second-order step (Heun: at the next level; DPM2, DPM++ 2S a, DPM++ SDE: between them)
    lies after it; without a schedule the host gives ``index``. Fractions "of the steps" compare with ``at``,
    so a spec means the same share of the schedule on every sampler."""

    index: int
    total: int
    steps: int
    at: float

    @classmethod
    def plain(cls, index: int, steps: int) -> "Call":
        """A call of a sampler that calls the model once a step (the toy's DDIM, tests)."""
        return cls(index, steps, steps, float(index))


def schedule_position(level: float, schedule: Sequence[float]) -> float:
    """Where noise level ``level`` lies on a schedule of levels (sigmas, or timesteps; either order), in
    steps from the noisiest: level i of the descending schedule -> i, between two levels linearly in between;
    above the first -> 0 (a sampler's churn), below the last -> the last index."""
    levels = sorted((float(v) for v in schedule), reverse=True)
    if not levels:
        return 0.0
    if level >= levels[0]:
        return 0.0
    for i in range(len(levels) - 1):
        hi, lo = levels[i], levels[i + 1]
        if hi >= level >= lo:
            if level == lo:  # exactly on a level: that level's index (the next step's start)
                return float(i + 1)
            return i + (hi - level) / (hi - lo) if hi > lo else float(i)
    return float(len(levels) - 1)


def steps_of_calls(places: Sequence[float], steps: int) -> list[int]:
    """The sampler step (0 .. steps - 1) each call of a whole sampling belongs to, from the calls' places
    (``Call.at``): step j starts at the last call placed exactly at j (Heun evaluates level j twice: as step
    j - 1's second call, then as step j's first), and every call up to the next start is part of it (DPM2's
    midpoints; a last call at the final level is the last step's)."""
    starts = {}
    for i, at in enumerate(places):
        if float(at).is_integer() and at < steps:
            starts[int(at)] = i
    out, step, begin = [], 0, sorted((i, j) for j, i in starts.items())
    k = 0
    for i, at in enumerate(places):
        while k < len(begin) and begin[k][0] <= i:
            step = begin[k][1]
            k += 1
        out.append(step if begin else int(at))
    return out


class CallClock:
    """The ``Call`` of each denoiser call of one sampling: the host makes one per sampling with its budget and
    steps, gives it the step schedule once it knows it (``schedule``) and asks ``next(level)`` before each
    call, ``level`` the call's noise level (sigma or timestep; None: the call's index stands for its place)."""

    def __init__(self, total: int, steps: int, schedule: Sequence[float] | None = None):
        self.total, self.steps = max(1, int(total)), max(1, int(steps))
        self.schedule = list(schedule) if schedule is not None else None
        self.calls = 0

    def next(self, level: float | None = None) -> Call:
        index = self.calls
        self.calls += 1
        at = schedule_position(level, self.schedule) if self.schedule and level is not None else float(index)
        return Call(index, self.total, self.steps, at)


class SamplingHooks:
    def __init__(self, parts: Sequence[Any] = ()):
        self.parts = [part for part in parts if part is not None]

    def __bool__(self) -> bool:
        return bool(self.parts)

    def enter(self) -> None:
        entered = []
        try:
            for part in self.parts:
                _call(part, "enter")
                entered.append(part)
        except BaseException:
            for part in reversed(entered):  # a part that failed to enter leaves the others as they were
                _call(part, "leave", False)
            raise

    def leave(self, completed: bool) -> None:
        error = None
        for part in reversed(self.parts):
            try:
                _call(part, "leave", completed)
            except BaseException as e:  # every part leaves, whatever one of them raised
                error = error or e
        if error is not None:
            raise error

    @contextmanager
    def running(self) -> Iterator["SamplingHooks"]:
        """``enter()`` ... ``leave(completed)`` around a block that samples (tests, benchmarks)."""
        self.enter()
        completed = False
        try:
            yield self
            completed = True
        finally:
            self.leave(completed)

    def before_call(self, call: Call, cond_rows: torch.Tensor | None) -> None:
        for part in self.parts:
            _call(part, "before_call", call, cond_rows)

    def after_call(self, call: Call, denoised: torch.Tensor) -> torch.Tensor | None:
        """The denoised prediction after every part had its say; None when no part changed it."""
        out = denoised
        for part in self.parts:
            new = _call(part, "after_call", call, out)
            if new is not None:
                out = new
        return None if out is denoised else out


def _call(part, name, *args):
    method = getattr(part, name, None)
    return method(*args) if method is not None else None
