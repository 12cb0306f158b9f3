"""The reroll benchmark's seam measure and its interval: per-image sums against a by-hand loop, and the bootstrap
interval of the seam ratio against the delta method's normal interval (an independent reference)."""
from __future__ import annotations

import math

import pytest
import torch

from lib_initedit.toy.bench_reroll import border_energy, border_pairs, border_totals, ratio_interval


def test_border_totals_sum_the_squared_steps_across_the_box():
    g = torch.Generator().manual_seed(3)
    images = torch.rand(3, 3, 8, 8, generator=g) * 2 - 1
    boxes = [(0.25, 0.25, 0.75, 0.75), (0.0, 0.0, 0.5, 0.5), (0.5, 0.25, 1.0, 0.625)]
    pairs = border_pairs(boxes, size=8)
    totals = border_totals(images, pairs)
    count = 0
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        r0, r1, c0, c1 = round(y0 * 8), round(y1 * 8), round(x0 * 8), round(x1 * 8)
        want = 0.0
        for y in range(8):
            for x in range(8):
                if not (r0 <= y < r1 and c0 <= x < c1):
                    continue
                for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
                    qy, qx = y + dy, x + dx
                    if 0 <= qy < 8 and 0 <= qx < 8 and not (r0 <= qy < r1 and c0 <= qx < c1):
                        want += float((((images[i, :, y, x] - images[i, :, qy, qx]) / 2) ** 2).sum())
                        count += 1
        assert totals[i].item() == pytest.approx(want)
    assert border_energy(images, pairs) == pytest.approx(float(totals.sum()) / count)


def test_ratio_interval_matches_the_delta_method_on_iid_images():
    g = torch.Generator().manual_seed(0)
    n = 2000
    den = torch.rand(n, generator=g, dtype=torch.float64) * 2 + 0.5
    num = 1.1 * den + torch.randn(n, generator=g, dtype=torch.float64) * 0.3
    r = float(num.sum() / den.sum())
    resid = num - r * den  # delta method: var(sum num / sum den) ~ var(num - r den) / (n mean(den)^2)
    se = math.sqrt(float(resid.var()) / n) / float(den.mean())
    lo, hi = ratio_interval(num, den)
    assert lo < r < hi
    assert abs((r - lo) - 1.96 * se) < 0.15 * 1.96 * se
    assert abs((hi - r) - 1.96 * se) < 0.15 * 1.96 * se
    assert ratio_interval(2 * den, den) == (pytest.approx(2.0), pytest.approx(2.0))  # no spread, no interval
