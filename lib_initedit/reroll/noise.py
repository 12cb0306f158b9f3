"""Region reroll: masks at latent resolution and the variance-preserving blend.

x_T must stay exactly standard normal, so a region is blended as ``sqrt(1-w^2)*base + w*fresh`` with
``w = strength * mask``: for independent unit-variance inputs the result has unit variance everywhere,
equals ``base`` exactly where w = 0 and ``fresh`` exactly where w = 1.
"""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from ..spec import RerollRegion, SpecError

NoiseStream = Any  # ``next() -> (B, C, H, W)`` standard normal draws, one generator per image (the WebUI's ImageRNG)
StreamFactory = Callable[[list], NoiseStream]  # seeds of the batch's images -> their noise stream


def box_coverage(box: Sequence[float], height: int, width: int) -> torch.Tensor:
    """(height, width) fraction of each latent cell that the box covers (area-correct, 0..1)."""
    x0, y0, x1, y1 = box
    cov_x = _interval_coverage(x0 * width, x1 * width, width)
    cov_y = _interval_coverage(y0 * height, y1 * height, height)
    return cov_y[:, None] * cov_x[None, :]


def _interval_coverage(a: float, b: float, n: int) -> torch.Tensor:
    cells = torch.arange(n, dtype=torch.float64)
    return (torch.minimum(cells + 1, torch.tensor(b)) - torch.maximum(cells, torch.tensor(a))).clamp(0, 1).float()


def box_feather_ramp(box: Sequence[float], height: int, width: int, feather: float) -> torch.Tensor:
    """Smooth 0->1 ramp that rises inside the box over ``feather * min(h, w)`` cells from its edge.

    The ramp lies inside the box, so nothing outside the box ever changes.
    """
    if feather <= 0:
        return torch.ones(height, width)
    x0, y0, x1, y1 = box
    cx = (torch.arange(width, dtype=torch.float32) + 0.5) / width
    cy = (torch.arange(height, dtype=torch.float32) + 0.5) / height
    dx = torch.minimum(cx - x0, x1 - cx) * width
    dy = torch.minimum(cy - y0, y1 - cy) * height
    dist = torch.minimum(dy[:, None], dx[None, :])
    return _smoothstep(dist / (feather * min(height, width)))


def mask_from_png(data: str, height: int, width: int) -> torch.Tensor:
    """Decode a base64 PNG (white = region; alpha multiplies) and area-resize it to (height, width)."""
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(base64.b64decode(data)))
        img.load()
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise SpecError(f"mask: cannot be read as an image ({e})") from None
    gray = img.convert("L")
    if "A" in img.getbands():
        alpha = img.getchannel("A")
        gray = Image.fromarray(_np_mul(gray, alpha))
    small = gray.resize((width, height), Image.BOX)  # BOX = area average: a 1-cell stroke keeps its weight
    return torch.frombuffer(bytearray(small.tobytes()), dtype=torch.uint8).float().view(height, width) / 255.0


def _np_mul(a, b):
    import numpy as np

    return (np.asarray(a, dtype=np.uint16) * np.asarray(b, dtype=np.uint16) // 255).astype(np.uint8)


def mask_feather_ramp(mask: torch.Tensor, feather: float) -> torch.Tensor:
    """Ramp rising over ``feather * min(h, w)`` cells from the mask's edge inward (chessboard distance)."""
    h, w = mask.shape
    if feather <= 0:
        return torch.ones(h, w)
    reach = feather * min(h, w)
    inside = (mask >= 0.5).float()[None, None]
    dist = torch.zeros(h, w)
    cur = inside
    for _ in range(int(reach) + 2):  # erode step by step; each survived step is one cell further inside
        if not cur.any():
            break
        dist += cur[0, 0]
        cur = -F.max_pool2d(-F.pad(cur, (1, 1, 1, 1), value=0.0), 3, stride=1)
    return _smoothstep((dist - 0.5).clamp(min=0) / reach)


def region_weight(region: RerollRegion, height: int, width: int) -> torch.Tensor:
    """w = strength * mask (0..1) at latent resolution for one region."""
    if region.box is not None:
        mask = box_coverage(region.box, height, width) * box_feather_ramp(region.box, height, width, region.feather)
    else:
        soft = mask_from_png(region.mask, height, width)
        mask = soft * mask_feather_ramp(soft, region.feather)
    return (mask * region.strength).clamp(0.0, 1.0)


def spatial_weight(weight: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (B, 1, H, W) or (H, W) latent-image weight shaped to broadcast over ``like`` = (B, C, [T, ...,] H, W):
    every channel (any count: 4, 16, 128 ...) and every extra axis between them (the frame axis of video-VAE
    latents, (B, C, T, H, W)) gets the same weight. The last two axes are always the latent image's."""
    if weight.dim() >= like.dim() or weight.dim() < 3:
        return weight
    return weight.reshape(*weight.shape[:2], *([1] * (like.dim() - weight.dim())), *weight.shape[2:])


def blend(base: torch.Tensor, fresh: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """sqrt(1-w^2)*base + w*fresh, computed in fp32; weight broadcasts over channels (and frames)."""
    w = spatial_weight(weight, base).to(device=base.device, dtype=torch.float32)
    keep = torch.sqrt((1.0 - w * w).clamp(min=0.0))
    out = keep * base.float() + w * fresh.to(base.device).float()
    return out.to(base.dtype)


@dataclass
class BatchReroll:
    """The regions of one batch, ready to blend: ``weights[r]`` (B, 1, H, W) and ``streams[r]`` (region r's
    seeds, one per image). The first draw of the streams rerolls x_T; every later draw of the host's noise
    (ancestral / SDE steps) is blended with the streams' next draw, so the regions follow their seeds."""

    weights: list[torch.Tensor]
    streams: list[NoiseStream]
    regions: list[int]  # which of the spec's regions each entry is (regions selecting nothing are left out)

    def blend_next(self, x: torch.Tensor) -> torch.Tensor:
        """Blend one draw of every region's stream into x, region by region, in order."""
        return self.blend(x, [stream.next() for stream in self.streams])

    def blend(self, x: torch.Tensor, draws: Sequence[torch.Tensor]) -> torch.Tensor:
        """Blend region r's draw ``draws[r]`` (any unit-variance noise of x's shape) into x, in order."""
        for draw, weight in zip(draws, self.weights):
            x = blend(x, draw, weight)
        return x


def plan_reroll(regions: Sequence[Sequence[RerollRegion]], latent_hw: tuple[int, int],
                streams_for: StreamFactory, device: Any = None) -> BatchReroll | None:
    """regions[b]: image b's regions (same count for every image; geometry and seeds may differ).

    Regions that select nothing in every image are dropped; None when nothing is left.
    """
    height, width = latent_hw
    weights, streams, kept = [], [], []
    for r in range(len(regions[0]) if regions else 0):
        weight = torch.stack([region_weight(item[r], height, width) for item in regions])[:, None]
        if not bool(weight.any()):
            continue
        weights.append(weight if device is None else weight.to(device))
        streams.append(streams_for([item[r].seed for item in regions]))
        kept.append(r)
    return BatchReroll(weights, streams, kept) if streams else None


def reroll_batch(x: torch.Tensor, regions: Sequence[Sequence[RerollRegion]], streams_for: StreamFactory
                 ) -> tuple[torch.Tensor, BatchReroll | None]:
    """Reroll the regions of a batch of initial noise (B, C, H, W): the one reroll path (extension, bench,
    demo, tests). Returns the new noise and the plan, whose ``blend_next`` serves the later draws."""
    plan = plan_reroll(regions, (int(x.shape[-2]), int(x.shape[-1])), streams_for, x.device)
    return (plan.blend_next(x), plan) if plan is not None else (x, None)


def _smoothstep(t: torch.Tensor) -> torch.Tensor:
    t = t.clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)
