"""Wrappers around a host's per-batch noise stream (the WebUI's ``p.rng``: ``next() -> (B, C, H, W)``).

The first ``next()`` is the initial noise; ancestral samplers draw every later step's noise from the
same object. Rerolled regions should follow the reroll seed there too, so a reroll of the whole image
at strength 1 reproduces that seed's image exactly, ancestral samplers included.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from .noise import BatchReroll


class RerollStream:
    """Delegates to ``base`` and blends every draw with the regions' own streams (``BatchReroll.blend_next``)."""

    def __init__(self, base: Any, reroll: BatchReroll):
        self.base = base
        self.reroll = reroll

    def next(self) -> torch.Tensor:
        return self.reroll.blend_next(self.base.next())

    def __getattr__(self, name):  # seeds, shape, generators, is_first ... stay the base's
        return getattr(self.base, name)


class RerollNoiseSampler:
    """The same for SDE samplers' noise (``noise_sampler(sigma, sigma_next)``, a Brownian increment per image):
    a variance-preserving blend of independent Brownian motions is again one, so inside the regions the
    noise follows the regions' seeds exactly as ``RerollStream`` does for ancestral steps."""

    def __init__(self, base: Callable, reroll: BatchReroll, region_samplers: list):
        self.base = base
        self.reroll = reroll
        self.region_samplers = region_samplers

    def __call__(self, sigma, sigma_next) -> torch.Tensor:
        draws = [sampler(sigma, sigma_next) for sampler in self.region_samplers]
        return self.reroll.blend(self.base(sigma, sigma_next), draws)


class FirstDrawHook:
    """Runs ``edit(first_noise) -> (noise, follow)`` on the first draw; later draws come from ``follow``.

    The fallback for WebUIs without ``process_before_every_sampling`` (A1111 1.6-1.9): the sampler
    asks ``p.rng`` for the initial noise after the conds exist, so the edit can run right there.
    """

    def __init__(self, base: Any, edit: Callable[[torch.Tensor], tuple[torch.Tensor, Any]]):
        self.base = base
        self.edit = edit
        self.follow = None

    def next(self) -> torch.Tensor:
        if self.follow is None:
            x, self.follow = self.edit(self.base.next())
            return x
        return self.follow.next()

    def __getattr__(self, name):
        return getattr(self.base, name)
