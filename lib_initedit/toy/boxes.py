"""The layout bench's strata: box generators and the fixed case lists (prompt, boxes, noise seed per sample).

Sample i of a stratum uses noise seed 10_000 + i; its prompt and boxes come from seed ``Stratum.seed + i``
(the random-box strata: 1_000 * k + i for k objects), so every method sees the same noises, prompts and boxes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import detect
from .data import random_prompt


def _disjoint(boxes) -> bool:
    return all(detect.iou(a, b) == 0 for i, a in enumerate(boxes) for b in boxes[i + 1:])


def random_boxes(rng: np.random.Generator, k: int, lo: float = 0.3, hi: float = 0.5) -> list[tuple]:
    """k non-overlapping square-ish boxes (fractions); sides shrink if placement keeps failing."""
    for attempt in range(200):
        scale = 1.0 if attempt < 100 else 0.8
        boxes = []
        for _ in range(k):
            w, h = rng.uniform(lo, hi, 2) * scale
            x0, y0 = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
            boxes.append((float(x0), float(y0), float(x0 + w), float(y0 + h)))
        if _disjoint(boxes):
            return boxes
    return boxes


def thin_boxes(rng: np.random.Generator, k: int) -> list[tuple]:
    """k non-overlapping boxes with aspect ratio 2.5-4 (long side 0.5-0.8), each horizontal or vertical."""
    for _ in range(500):
        boxes = []
        for _ in range(k):
            long = rng.uniform(0.5, 0.8)
            short = long / rng.uniform(2.5, 4.0)
            w, h = (long, short) if rng.random() < 0.5 else (short, long)
            x0, y0 = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
            boxes.append((float(x0), float(y0), float(x0 + w), float(y0 + h)))
        if _disjoint(boxes):
            return boxes
    raise RuntimeError("thin boxes: no placement found")


def adjacent_boxes(rng: np.random.Generator, k: int) -> list[tuple]:
    """k boxes touching in a row or a column: a span of 0.6-1.0 cut into k equal parts, across 0.3-0.5."""
    span, across = rng.uniform(0.6, 1.0), rng.uniform(0.3, 0.5)
    a0, c0 = rng.uniform(0, 1 - span), rng.uniform(0, 1 - across)
    cuts = [a0 + span * j / k for j in range(k + 1)]
    row = rng.random() < 0.5
    return [(float(cuts[j]), float(c0), float(cuts[j + 1]), float(c0 + across)) if row else
            (float(c0), float(cuts[j]), float(c0 + across), float(cuts[j + 1])) for j in range(k)]


def border_boxes(rng: np.random.Generator, k: int) -> list[tuple]:
    """k non-overlapping boxes (sides 0.3-0.45), each touching the image border (an edge or a corner)."""
    for _ in range(500):
        boxes = []
        for _ in range(k):
            w, h = rng.uniform(0.3, 0.45, 2)
            x0, y0 = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
            side = int(rng.integers(0, 4))
            if side == 0:
                x0 = 0.0
            elif side == 1:
                x0 = 1.0 - w
            elif side == 2:
                y0 = 0.0
            else:
                y0 = 1.0 - h
            boxes.append((float(x0), float(y0), float(min(1.0, x0 + w)), float(min(1.0, y0 + h))))
        if _disjoint(boxes):
            return boxes
    raise RuntimeError("border boxes: no placement found")


def corner_boxes(rng: np.random.Generator, k: int, lo: float = 0.2, hi: float = 0.3) -> list[tuple]:
    """k small boxes (sides lo-hi), each in a different corner of the image (touching two borders)."""
    corners = rng.permutation(4)[:k]
    boxes = []
    for corner in corners:
        w, h = rng.uniform(lo, hi, 2)
        x0 = 0.0 if corner in (0, 2) else 1.0 - w
        y0 = 0.0 if corner in (0, 1) else 1.0 - h
        boxes.append((float(x0), float(y0), float(min(1.0, x0 + w)), float(min(1.0, y0 + h))))
    return boxes


def edge_boxes(rng: np.random.Generator, k: int, lo: float = 0.2, hi: float = 0.3) -> list[tuple]:
    """k small boxes (sides lo-hi) along one edge of the image (each touching it), apart from each other."""
    side = int(rng.integers(0, 4))
    for _ in range(500):
        boxes = []
        for _ in range(k):
            along, across = rng.uniform(lo, hi, 2)
            a0 = rng.uniform(0, 1 - along)
            c0 = 0.0 if side in (0, 2) else 1.0 - across
            boxes.append((a0, c0, a0 + along, c0 + across) if side < 2 else (c0, a0, c0 + across, a0 + along))
        boxes = [(float(x0), float(y0), float(min(1.0, x1)), float(min(1.0, y1))) for x0, y0, x1, y1 in boxes]
        if _disjoint(boxes):
            return boxes
    raise RuntimeError("edge boxes: no placement found")


@dataclass(frozen=True)
class Stratum:
    k: int
    boxes: Callable
    seed: int  # prompt/box seed of sample i: seed + i (random boxes: 1_000 * k + i, as before)
    label: str


STRATA = {
    "1": Stratum(1, random_boxes, 1_000, "random boxes, 1 object"),
    "2": Stratum(2, random_boxes, 2_000, "random boxes, 2 objects"),
    "3": Stratum(3, random_boxes, 3_000, "random boxes, 3 objects"),
    "small1": Stratum(1, lambda r, k: random_boxes(r, k, 0.2, 0.3), 110_000, "small box (side 0.2-0.3), 1 object"),
    "small2": Stratum(2, lambda r, k: random_boxes(r, k, 0.2, 0.3), 120_000, "small boxes, 2 objects"),
    "large1": Stratum(1, lambda r, k: random_boxes(r, k, 0.6, 0.9), 210_000, "large box (side 0.6-0.9), 1 object"),
    "thin2": Stratum(2, thin_boxes, 320_000, "thin boxes (aspect 2.5-4), 2 objects"),
    "adjacent2": Stratum(2, adjacent_boxes, 420_000, "2 touching boxes in a row/column"),
    "adjacent3": Stratum(3, adjacent_boxes, 430_000, "3 touching boxes in a row/column"),
    "border2": Stratum(2, border_boxes, 520_000, "2 boxes at the image border"),
    "four4": Stratum(4, lambda r, k: random_boxes(r, k, 0.25, 0.4), 640_000, "4 objects, random boxes 0.25-0.4"),
    "corner1": Stratum(1, corner_boxes, 710_000, "small box (side 0.2-0.3) in a corner, 1 object"),
    "edge2": Stratum(2, edge_boxes, 720_000, "2 small boxes along one edge"),
}
USER_STRATA = ("small1", "small2", "large1", "thin2", "adjacent2", "adjacent3", "border2", "four4", "corner1", "edge2")


def layout_cases(k: int | str, n: int):
    """The n cases of a stratum (a key of STRATA; an int k means the random-box stratum with k objects)."""
    st = STRATA[str(k)]
    cases = []
    for i in range(n):
        rng = np.random.default_rng(st.seed + i)
        objs = random_prompt(rng, st.k)
        phrases = [f"{c} {s}" for c, s in objs]
        caption = " and ".join(f"a {p}" for p in phrases)
        cases.append(dict(noise_seed=10_000 + i, caption=caption, phrases=phrases,
                          colours=[c for c, _ in objs], shapes=[s for _, s in objs], boxes=st.boxes(rng, st.k)))
    return cases
