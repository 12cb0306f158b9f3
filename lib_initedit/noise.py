"""Region reroll: masks at latent resolution and the variance-preserving blend.

x_T must stay exactly standard normal, so a region is blended as ``sqrt(1-w^2)*base + w*fresh`` with
``w = strength * mask``: for independent unit-variance inputs the result has unit variance everywhere,
equals ``base`` exactly where w = 0 and ``fresh`` exactly where w = 1.
"""
from __future__ import annotations

import base64
import io
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from .spec import RerollRegion, SpecError

FreshNoise = Callable[[int, tuple], torch.Tensor]  # (seed, shape) -> standard normal tensor


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


def blend(base: torch.Tensor, fresh: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """sqrt(1-w^2)*base + w*fresh, computed in fp32; weight broadcasts over channels."""
    w = weight.to(device=base.device, dtype=torch.float32)
    keep = torch.sqrt((1.0 - w * w).clamp(min=0.0))
    out = keep * base.float() + w * fresh.to(base.device).float()
    return out.to(base.dtype)


def reroll_noise(base: torch.Tensor, regions: Sequence[RerollRegion], fresh: FreshNoise) -> torch.Tensor:
    """Reroll the regions of one image's noise (C, H, W). Regions apply in order, each variance-preserving."""
    _, height, width = base.shape
    out = base
    for region in regions:
        weight = region_weight(region, height, width)
        if not bool(weight.any()):
            continue
        out = blend(out, fresh(region.seed, tuple(base.shape)), weight)
    return out


def _smoothstep(t: torch.Tensor) -> torch.Tensor:
    t = t.clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)
