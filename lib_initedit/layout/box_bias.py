"""How a layout box becomes the additive score bias of its phrase on one attention layer (``guidance.py``).

The shipped default: ``+strength`` on the cells whose centre is inside the box, ``-strength`` elsewhere, the
strength scaled up for boxes smaller than ``size_ref`` of the image (``size_power``, capped at 3x). The other
fields are ablations measured in docs/layout.md and left at values that change nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .placement import box_cells, box_coverage

MAX_SIZE_GAIN = 3.0  # a small box's bias is at most this many times the strength


@dataclass(frozen=True)
class BoxBias:
    size_power: float = 0.0  # strength x (size_ref / area) ** size_power, within [size_floor, MAX_SIZE_GAIN]
    size_ref: float = 0.16
    size_floor: float = 1.0  # < 1: boxes larger than size_ref get less than the strength
    large_inside: float = 0.0  # q > 0: only the inside pull of a box larger than size_ref, x (size_ref / area) ** q
    core: float = 1.0  # < 1: the pull only in the box's central fraction, 0 in the rest of the box
    large_core: float = 1.0  # the same, only for boxes larger than size_ref
    edge: str = "centre"  # "area": a cell gets strength x (2 x its share inside the box - 1)

    def weight(self, box: Sequence[float]) -> float:
        """The box's strength multiplier (1 without size scaling)."""
        if self.size_power <= 0:
            return 1.0
        return float(min(MAX_SIZE_GAIN, max(self.size_floor, (self.size_ref / _area(box)) ** self.size_power)))

    def column(self, box: Sequence[float], strength: float, h: int, w: int) -> torch.Tensor:
        """(h*w,) float32 bias of the box's phrase columns at a layer of h x w cells (strength: weighted)."""
        inside = box_cells(box, h, w).flatten()
        if self.large_inside > 0:
            pull = strength * min(1.0, self.size_ref / _area(box)) ** self.large_inside
            return torch.where(inside, pull, -strength).float()
        if self.edge == "area":
            return (strength * (2 * box_coverage(box, h, w).flatten() - 1)).float()
        fraction = min(self.core, self.large_core) if _area(box) > self.size_ref else self.core
        core = box_cells(_shrink(box, fraction), h, w).flatten() & inside if fraction < 1 else inside
        return torch.where(core, strength, torch.where(inside, 0.0, -strength)).float()


def _area(box: Sequence[float]) -> float:
    return max(1e-6, (box[2] - box[0]) * (box[3] - box[1]))


def _shrink(box: Sequence[float], core: float) -> tuple:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    hw, hh = (box[2] - box[0]) * core / 2, (box[3] - box[1]) * core / 2
    return (cx - hw, cy - hh, cx + hw, cy + hh)
