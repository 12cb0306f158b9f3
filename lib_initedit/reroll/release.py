"""Keep the rest as a release map: when each latent element stops following the base, as a fraction of the
kept time.

Inside the rerolled regions the elements run free from the start. Outside, beyond a band around the regions,
they follow the base generation for the whole kept time ``K`` (``keep`` x the steps, or x the calls for
infotexts written before ``fraction_of``; to the end at keep 1). In the band (its width ``band`` a fraction of
the latent's shorter side, measured from the regions' cells) each element is released at its own time, the
later the farther it lies from the regions:

    release(p) = shape(d(p) / band_cells)   for 0 < d(p) < band_cells
    release(p) = 0                          inside a region (d = 0)
    release(p) = 1                          beyond the band (and everywhere at band 0)

``d(p)`` is the Euclidean distance, in latent cells, from the centre of cell p to the nearest cell of a
region (each region's cells: its coverage at strength 1 without feather >= 0.5; a mask's too). An element
follows the base while the sampler is before ``K * release(p)`` and is free from then on, like Differential
Diffusion's per-element timing. ``keep.KeepBlend`` blends with ``w = max(m, released)``, ``m`` the regions'
soft geometry, so an element that neither belongs to a region (m = 0) nor is released yet takes the base's
prediction exactly, and by induction its latent stays the base's bit for bit (elementwise samplers).

band 0 is exactly the keep of before the band existed: every element outside the regions' full cells
follows (blended by ``m``) for the kept time, then everything runs free.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..spec import RerollRegion
from .noise import region_weight


def _linear(t: torch.Tensor) -> torch.Tensor:
    return t


def _smoothstep(t: torch.Tensor) -> torch.Tensor:
    return t * t * (3.0 - 2.0 * t)


def _early(t: torch.Tensor) -> torch.Tensor:  # the near band is released early, the far band late
    return t * t


def _late(t: torch.Tensor) -> torch.Tensor:  # the whole band is held long, released quickly at the end
    return 1.0 - (1.0 - t) * (1.0 - t)


def _early_smooth(t: torch.Tensor) -> torch.Tensor:  # early near the region, flat at the band's outer edge
    return t * t * t * (4.0 - 3.0 * t)


def _at_once(t: torch.Tensor) -> torch.Tensor:  # the whole band free after a tenth of the kept time: a limit
    return torch.where(t > 0, torch.full_like(t, 0.1), torch.zeros_like(t))


# shape(t), t = d / band in 0..1 -> the fraction of the kept calls an element at that distance follows
SHAPES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "linear": _linear, "smoothstep": _smoothstep, "early": _early, "late": _late,
    "early-smooth": _early_smooth, "at-once": _at_once,
}
DEFAULT_SHAPE = "early-smooth"


@dataclass(frozen=True)
class Release:
    """A way to release the band: the shape of the release times, and whether an element of the band takes
    ``1 - release`` of the new prediction before its release (``soft``) or nothing (all or nothing)."""

    shape: str
    soft: bool


# spec.keep_release -> Release; measured against the other shapes, widths and blends: docs/reroll-keep.md
RELEASES = {"soft": Release("smoothstep", True), "hard": Release("early-smooth", False)}


def region_cells(regions: Sequence[RerollRegion], height: int, width: int) -> torch.Tensor:
    """(height, width) bool: the cells of the regions (coverage at strength 1 without feather >= 0.5, a region
    smaller than half a cell: its best-covered cells), united."""
    cells = torch.zeros(height, width, dtype=torch.bool)
    for region in regions:
        cover = region_weight(dataclasses.replace(region, strength=1.0, feather=0.0), height, width)
        top = float(cover.max())
        if top > 0:
            cells |= cover >= min(0.5, top)
    return cells


def distance_to_cells(cells: torch.Tensor, reach: float) -> torch.Tensor:
    """(H, W) Euclidean distance from each cell's centre to the nearest selected cell (a unit square), in
    cells: 0 on the selected cells, 0.5 next to them; ``inf`` where it is ``reach`` or more.

    Separable, like an exact distance transform: the squared distance to the square of the cell (dy, dx) away
    is ``g(dy) + g(dx)`` with ``g(d) = max(|d| - 0.5, 0)^2``, so a pass along the rows (the nearest selected
    cell of each row) and one along the columns give the minimum over every cell within reach, in float64."""
    h, w = cells.shape
    if reach <= 0 or not bool(cells.any()):
        return torch.where(cells, torch.zeros(h, w), torch.full((h, w), math.inf))
    r = int(math.ceil(reach + 0.5))
    far = reach * reach
    gap = [max(abs(d) - 0.5, 0.0) ** 2 for d in range(-r, r + 1)]
    padded = torch.zeros(h, w + 2 * r, dtype=torch.bool)
    padded[:, r:r + w] = cells
    rows = torch.full((h, w), math.inf, dtype=torch.float64)  # squared gap to the nearest selected cell in the row
    for dx in range(-r, r + 1):
        if gap[dx + r] < far:
            rows = torch.where(padded[:, r + dx:r + dx + w], rows.clamp(max=gap[dx + r]), rows)
    rows_padded = torch.full((h + 2 * r, w), math.inf, dtype=torch.float64)
    rows_padded[r:r + h] = rows
    best = torch.full((h, w), math.inf, dtype=torch.float64)
    for dy in range(-r, r + 1):
        if gap[dy + r] < far:
            best = torch.minimum(best, rows_padded[r + dy:r + dy + h] + gap[dy + r])
    dist = best.sqrt()
    return torch.where(dist < reach, dist, torch.full_like(dist, math.inf)).float()


def release_fraction(distance: torch.Tensor, band_cells: float, shape: str = DEFAULT_SHAPE) -> torch.Tensor:
    """(H, W) float: when each element runs free, a fraction of the kept time (it follows the base before
    ``K * this``): 0 inside (distance 0), 1 at or beyond the band."""
    if shape not in SHAPES:
        raise ValueError(f"release shape {shape!r} is not one of {', '.join(SHAPES)}")
    full = torch.ones_like(distance)
    if band_cells <= 0:
        return full
    t = (distance / band_cells).clamp(0.0, 1.0)
    return torch.where(distance < band_cells, SHAPES[shape](t), full)


def release_map(regions: Sequence[RerollRegion], height: int, width: int, band: float,
                shape: str = DEFAULT_SHAPE) -> torch.Tensor:
    """(height, width) release fractions of one image's regions; ``band``: fraction of min(height, width)."""
    band_cells = max(0.0, float(band)) * min(height, width)
    if band_cells <= 0:
        return torch.ones(height, width)
    return release_fraction(distance_to_cells(region_cells(regions, height, width), band_cells), band_cells, shape)


def band_cells_mask(regions: Sequence[RerollRegion], height: int, width: int, band: float) -> torch.Tensor:
    """(height, width) bool: the band, the cells outside the regions closer than ``band`` (fraction of the
    shorter side) to them (what the bench reports as "in the band")."""
    band_cells = max(0.0, float(band)) * min(height, width)
    d = distance_to_cells(region_cells(regions, height, width), band_cells)
    return (d > 0) & (d < band_cells)
