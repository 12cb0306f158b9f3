"""Scoring toy layout images: success (every object's centroid in its box), IoU, leak, detection."""
from __future__ import annotations

import numpy as np
import torch

from . import detect
from .data import SIZE


def score(images: torch.Tensor, cases, min_area: int = 6) -> dict:
    """success: every object's centroid in its box; leak: some phrase's colour also forms a second component
    (>= min_area px) or a component whose centroid is outside the box."""
    found = inside = success = shape_ok = total = leaks = 0
    ious = []
    for img, case in zip(images, cases):
        labels = detect.label_pixels(img)
        ok, leak = True, False
        for colour, shape, box in zip(case["colours"], case["shapes"], case["boxes"]):
            comps = [c for c in detect.components(labels == detect.NAMES.index(colour)) if len(c) >= min_area]
            outside = [c for c in comps if not _centroid_in(c, box)]
            leak |= len(comps) >= 2 or bool(outside)
            d = detect.detect(img, colour, min_area, labels)
            total += 1
            if d is None:
                ok = False
                ious.append(0.0)
                continue
            found += 1
            shape_ok += d.shape == shape
            cx, cy = d.cx / SIZE, d.cy / SIZE
            hit = box[0] <= cx <= box[2] and box[1] <= cy <= box[3]
            inside += hit
            ok &= hit
            ious.append(detect.iou([v / SIZE for v in d.box], box))
        success += ok
        leaks += leak
    n = len(cases)
    return dict(n=n, success=success / n, mean_iou=float(np.mean(ious)), leak=leaks / n, detected=found / total,
                centroid_in_box=inside / total, shape_match=shape_ok / max(1, found))


# The toy's objects are 7-14 px wide (radius 3.5-7 of 32 px): boxes in a row narrower than 8 px (0.25) ask
# for objects that overlap their neighbours.
NARROW = 8 / SIZE


def by_width(images: torch.Tensor, cases, narrow: float = NARROW) -> dict:
    """Success of the cases whose narrowest box side is < ``narrow`` and of the others (adjacent strata)."""
    out = {}
    for name, pick in (("narrow", lambda w: w < narrow), ("wide", lambda w: w >= narrow)):
        idx = [i for i, c in enumerate(cases) if pick(min(min(b[2] - b[0], b[3] - b[1]) for b in c["boxes"]))]
        if idx:
            part = score(images[idx], [cases[i] for i in idx])
            out[f"success_{name}"], out[f"n_{name}"] = part["success"], len(idx)
    return out


def _centroid_in(comp, box) -> bool:
    cy = (sum(p[0] for p in comp) / len(comp) + 0.5) / SIZE
    cx = (sum(p[1] for p in comp) / len(comp) + 0.5) / SIZE
    return box[0] <= cx <= box[2] and box[1] <= cy <= box[3]
