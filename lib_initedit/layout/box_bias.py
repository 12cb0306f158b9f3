"""How a layout box becomes its phrase's guidance target on one attention layer (``guidance.py``).

Each cell of a layer gets a sign for the box: +1 where the phrase is pulled in (the cells whose centre is in
the box; for a box larger than ``size_ref`` of the image only its central ``large_core`` per side), 0 in the
rest of the box, -1 outside. A box smaller than ``size_ref`` counts ``weight`` times (``size_power``, at most
``MAX_SIZE_GAIN``): in "logits" units its bias is ``weight`` x the strength, in "share" units the part of
the attention it leaves to the rest of the prompt is raised to the power ``weight``. ``LayoutGuidance.from_spec``
builds the shipped setting (``size_power`` 1, ``large_core`` from the spec's ``guidance_core``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .placement import box_cells

MAX_SIZE_GAIN = 3.0  # a small box counts at most this many times
SIZE_REF = 0.16  # boxes smaller than this fraction of the image count more


@dataclass(frozen=True)
class BoxBias:
    size_power: float = 0.0  # weight = (size_ref / area) ** size_power, within [1, MAX_SIZE_GAIN]
    size_ref: float = SIZE_REF
    large_core: float = 1.0  # < 1: a box larger than size_ref pulls only in its central fraction (per side)

    def weight(self, box: Sequence[float]) -> float:
        """How many times the box counts (1 without size scaling, up to MAX_SIZE_GAIN for small boxes)."""
        if self.size_power <= 0:
            return 1.0
        return float(min(MAX_SIZE_GAIN, max(1.0, (self.size_ref / _area(box)) ** self.size_power)))

    def sign(self, box: Sequence[float], h: int, w: int) -> torch.Tensor:
        """(h*w,) float32: +1 where the box pulls its phrase in, 0 in the rest of the box, -1 outside."""
        inside = box_cells(box, h, w).flatten()
        fraction = self.large_core if _area(box) > self.size_ref else 1.0
        core = box_cells(_shrink(box, fraction), h, w).flatten() & inside if fraction < 1 else inside
        return torch.where(core, 1.0, torch.where(inside, 0.0, -1.0)).float()

    def column(self, box: Sequence[float], strength: float, h: int, w: int) -> torch.Tensor:
        """(h*w,) float32 score bias in "logits" units (strength already weighted): strength x sign."""
        return (strength * self.sign(box, h, w)).float()


def _area(box: Sequence[float]) -> float:
    return max(1e-6, (box[2] - box[0]) * (box[3] - box[1]))


def _shrink(box: Sequence[float], core: float) -> tuple:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    hw, hh = (box[2] - box[0]) * core / 2, (box[3] - box[1]) * core / 2
    return (cx - hw, cy - hh, cx + hw, cy + hh)
