"""Colour detector for toy images: colour mask -> largest connected component -> centroid, box.

Pixels are labelled with the nearest palette colour (background included); no scipy needed.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .data import BACKGROUND, RGB

NAMES = ("background",) + tuple(RGB)
PALETTE = torch.tensor([BACKGROUND] + [RGB[c] for c in RGB])  # (6, 3) in [0, 1]


@dataclass
class Detection:
    colour: str
    area: int
    cx: float  # centroid, pixels (pixel centres at i + 0.5)
    cy: float
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, end exclusive

    @property
    def fill(self) -> float:
        x0, y0, x1, y1 = self.box
        return self.area / max(1, (x1 - x0) * (y1 - y0))

    @property
    def shape(self) -> str:
        """Crude guess from the fill ratio of the box: square ~1, circle ~0.79, triangle ~0.5."""
        f = self.fill
        return "square" if f > 0.88 else "circle" if f > 0.64 else "triangle"


def label_pixels(img: torch.Tensor, max_dist: float = 0.35) -> torch.Tensor:
    """(3, H, W) image in [-1, 1] -> (H, W) palette index; -1 where nothing is close."""
    rgb = ((img.float() + 1) / 2).clamp(0, 1).permute(1, 2, 0)  # H W 3
    d = (rgb[:, :, None, :] - PALETTE[None, None]).norm(dim=-1)  # H W 6
    dist, idx = d.min(dim=-1)
    idx[dist > max_dist] = -1
    return idx


def components(mask: torch.Tensor) -> list[list[tuple[int, int]]]:
    """4-connected components of a boolean (H, W) mask, as lists of (y, x)."""
    h, w = mask.shape
    seen = torch.zeros_like(mask, dtype=torch.bool)
    m = mask.tolist()
    seen_l = seen.tolist()
    out = []
    for y0 in range(h):
        for x0 in range(w):
            if not m[y0][x0] or seen_l[y0][x0]:
                continue
            stack, comp = [(y0, x0)], []
            seen_l[y0][x0] = True
            while stack:
                y, x = stack.pop()
                comp.append((y, x))
                for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                    if 0 <= ny < h and 0 <= nx < w and m[ny][nx] and not seen_l[ny][nx]:
                        seen_l[ny][nx] = True
                        stack.append((ny, nx))
            out.append(comp)
    return out


def detect(img: torch.Tensor, colour: str, min_area: int = 6, labels: torch.Tensor | None = None) -> Detection | None:
    """Largest component of `colour` in `img` (3, H, W) in [-1, 1], or None if under `min_area`."""
    labels = label_pixels(img) if labels is None else labels
    comps = components(labels == NAMES.index(colour))
    if not comps:
        return None
    comp = max(comps, key=len)
    if len(comp) < min_area:
        return None
    ys = [p[0] for p in comp]
    xs = [p[1] for p in comp]
    return Detection(colour, len(comp), sum(xs) / len(xs) + 0.5, sum(ys) / len(ys) + 0.5,
                     (min(xs), min(ys), max(xs) + 1, max(ys) + 1))


def detect_all(img: torch.Tensor, colours, min_area: int = 6) -> dict[str, Detection | None]:
    labels = label_pixels(img)
    return {c: detect(img, c, min_area, labels) for c in colours}


def iou(a, b) -> float:
    """IoU of two boxes (x0, y0, x1, y1) in the same units."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
