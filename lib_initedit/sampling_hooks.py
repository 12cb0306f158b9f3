"""What runs around and during one batch's sampling, host-agnostic.

A host calls ``enter()`` right before its sampler starts, ``before_call`` / ``after_call`` around every call
of its CFG denoiser (the function that returns the guided prediction the sampler steps with), and
``leave(completed)`` afterwards, also on error and interrupt. The parts are: layout guidance (wraps
attention forwards while sampling), keep (the outside of the rerolled regions follows a base generation)
and the recorder (remembers this generation as a base for later rerolls). Parts are plain objects with
any of those four methods; a missing method means "nothing to do".
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch


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

    def before_call(self, index: int, total: int, cond_rows: torch.Tensor | None) -> None:
        for part in self.parts:
            _call(part, "before_call", index, total, cond_rows)

    def after_call(self, index: int, total: int, denoised: torch.Tensor) -> torch.Tensor | None:
        """The denoised prediction after every part had its say; None when no part changed it."""
        out = denoised
        for part in self.parts:
            new = _call(part, "after_call", index, total, out)
            if new is not None:
                out = new
        return None if out is denoised else out


def _call(part, name, *args):
    method = getattr(part, name, None)
    return method(*args) if method is not None else None
