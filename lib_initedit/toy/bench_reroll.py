"""Reroll locality on the toy model: how much a rerolled region changes inside and outside (``bench.py`` runs it)."""
from __future__ import annotations

import numpy as np
import torch

from ..noise import reroll_batch
from ..spec import RerollRegion
from .data import SIZE, random_prompt
from .pipe import SeedStream, ToyPipe, seed_noise


def random_box(rng: np.random.Generator, lo: float = 0.3, hi: float = 0.5) -> tuple:
    from .bench import random_boxes

    return random_boxes(rng, 1, lo, hi)[0]


def bench_reroll(pipe: ToyPipe, n: int) -> dict:
    """Mean |delta pixel| (0..1 scale) outside / inside a rerolled box, vs global variation."""
    rng = np.random.default_rng(7)
    caps, boxes, base = [], [], []
    for i in range(n):
        objs = random_prompt(rng, int(rng.integers(1, 3)))
        caps.append(" and ".join(f"a {c} {s}" for c, s in objs))
        boxes.append(random_box(rng))
        base.append(seed_noise(20_000 + i))
    base = torch.stack(base)
    streams = lambda seeds: SeedStream(base.shape[1:], seeds)  # noqa: E731
    variants = {}
    for strength in (1.0, 0.5):
        variants[f"region, strength {strength}"] = reroll_batch(
            base, [[RerollRegion(box=boxes[i], seed=90_000 + i, strength=strength)] for i in range(n)], streams)[0]
        variants[f"global variation, strength {strength}"] = reroll_batch(
            base, [[RerollRegion(box=(0, 0, 1, 1), seed=90_000 + i, strength=strength)] for i in range(n)], streams)[0]
    img0 = pipe.generate(base, caps)
    masks = torch.zeros(n, SIZE, SIZE, dtype=torch.bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        masks[i, round(y0 * SIZE):round(y1 * SIZE), round(x0 * SIZE):round(x1 * SIZE)] = True
    out = {}
    for name, noise in variants.items():
        d = ((pipe.generate(noise, caps) - img0).abs().mean(dim=1) / 2)  # (n, H, W), 0..1 scale
        inside = float(d[masks].mean())
        outside = float(d[~masks].mean())
        out[name] = dict(n=n, inside=inside, outside=outside, ratio=outside / inside)
    return out


