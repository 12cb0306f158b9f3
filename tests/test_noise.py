import base64
import io

import pytest
import torch

from lib_initedit.reroll.noise import blend, box_coverage, mask_from_png, region_weight, reroll_batch
from lib_initedit.spec import RerollRegion
from lib_initedit.toy.pipe import SeedStream


def fresh_from_seed(seed, shape):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def reroll_noise(base, regions, fresh=None):
    """One image through the shipped batch path."""
    out, _ = reroll_batch(base[None], [regions], lambda seeds: SeedStream(base.shape, seeds))
    return out[0]


def test_blend_keeps_standard_normal():
    g = torch.Generator().manual_seed(0)
    base, fresh = torch.randn(4, 256, 256, generator=g), torch.randn(4, 256, 256, generator=g)
    for w in (0.1, 0.5, 0.9):
        out = blend(base, fresh, torch.full((256, 256), w))
        assert abs(out.mean().item()) < 0.01
        assert abs(out.std().item() - 1) < 0.01
    ramp = torch.linspace(0, 1, 256)[None, :].expand(256, 256)
    out = blend(base, fresh, ramp)
    assert abs(out.std().item() - 1) < 0.01
    # per-column variance stays 1 along the ramp too
    col_std = out.std(dim=(0, 1))
    assert (col_std - 1).abs().max() < 0.08


def test_exact_identities():
    base, fresh = fresh_from_seed(1, (4, 16, 16)), fresh_from_seed(2, (4, 16, 16))
    assert torch.equal(blend(base, fresh, torch.zeros(16, 16)), base)
    assert torch.equal(blend(base, fresh, torch.ones(16, 16)), fresh)
    strength0 = reroll_noise(base, [RerollRegion(box=(0, 0, 1, 1), seed=5, strength=0.0)], fresh_from_seed)
    assert torch.equal(strength0, base)
    whole = reroll_noise(base, [RerollRegion(box=(0, 0, 1, 1), seed=5, strength=1.0)], fresh_from_seed)
    assert torch.equal(whole, fresh_from_seed(5, (4, 16, 16)))


def test_box_region_changes_only_inside():
    base = fresh_from_seed(1, (4, 16, 16))
    out = reroll_noise(base, [RerollRegion(box=(0.25, 0.25, 0.5, 0.75), seed=9, strength=1.0)], fresh_from_seed)
    inside = torch.zeros(16, 16, dtype=torch.bool)
    inside[4:12, 4:8] = True
    assert torch.equal(out[:, ~inside], base[:, ~inside])
    assert torch.equal(out[:, inside], fresh_from_seed(9, (4, 16, 16))[:, inside])


def test_box_coverage_is_area_correct():
    cov = box_coverage((0.1, 0.0, 0.35, 1.0), 4, 8)  # x from 0.8 to 2.8 cells
    assert torch.allclose(cov[0], torch.tensor([0.2, 1.0, 0.8, 0, 0, 0, 0, 0]))
    assert cov.sum().item() == pytest.approx(0.25 * 32)


def test_feather_is_a_smooth_ramp_inside_the_box():
    w = region_weight(RerollRegion(box=(0, 0, 1, 1), strength=1.0, feather=0.25), 32, 32)
    row = w[16]
    assert row[0] < row[2] < row[4] < row[7]  # rises from the edge
    assert row[16] == 1.0  # full in the middle
    assert (w >= 0).all() and (w <= 1).all()
    w_outside = region_weight(RerollRegion(box=(0.5, 0.5, 1, 1), feather=0.2), 32, 32)
    assert w_outside[:16].abs().sum() == 0 and w_outside[:, :16].abs().sum() == 0


def png(array):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_mask_png_is_area_resized():
    import numpy as np

    arr = np.zeros((64, 64), dtype=np.uint8)
    arr[:, :32] = 255
    m = mask_from_png(png(arr), 8, 8)
    assert torch.equal(m[:, :4], torch.ones(8, 4)) and torch.equal(m[:, 4:], torch.zeros(8, 4))
    arr2 = np.zeros((64, 64), dtype=np.uint8)
    arr2[:, :4] = 255  # half of the first latent column (8 px)
    m2 = mask_from_png(png(arr2), 8, 8)
    assert m2[0, 0].item() == pytest.approx(0.5, abs=0.01)


def test_mask_alpha_and_rgb():
    import numpy as np

    rgba = np.zeros((16, 16, 4), dtype=np.uint8)
    rgba[..., :3] = 255
    rgba[:8, :, 3] = 255  # only the top half is opaque
    m = mask_from_png(png(rgba), 4, 4)
    assert torch.equal(m[:2], torch.ones(2, 4)) and torch.equal(m[2:], torch.zeros(2, 4))


def test_mask_region_feather_and_reroll():
    import numpy as np

    arr = np.zeros((128, 128), dtype=np.uint8)
    arr[32:96, 32:96] = 255
    region = RerollRegion(mask=png(arr), seed=3, strength=1.0, feather=0.1)
    w = region_weight(region, 16, 16)
    assert w[:4].sum() == 0 and w[8, 8] == 1.0 and 0 < w[4, 8] < 1
    base = fresh_from_seed(1, (4, 16, 16))
    out = reroll_noise(base, [region], fresh_from_seed)
    assert torch.equal(out[:, :4], base[:, :4])


def test_overlapping_regions_keep_unit_variance():
    base = torch.randn(4, 128, 128, generator=torch.Generator().manual_seed(0))
    regions = [RerollRegion(box=(0, 0, 1, 1), seed=1, strength=0.7), RerollRegion(box=(0, 0, 1, 1), seed=2, strength=0.6)]
    out = reroll_noise(base, regions, fresh_from_seed)
    assert abs(out.std().item() - 1) < 0.02 and abs(out.mean().item()) < 0.02


def test_batch_reroll_per_image_geometry_and_later_draws_follow():
    """Per-image boxes and seeds in one batch; the plan's later draws blend the region streams' next draws."""
    base = torch.stack([fresh_from_seed(1, (4, 16, 16)), fresh_from_seed(2, (4, 16, 16))])
    regions = [[RerollRegion(box=(0, 0, 0.5, 1), seed=7)], [RerollRegion(box=(0.5, 0, 1, 1), seed=8)]]
    out, plan = reroll_batch(base, regions, lambda seeds: SeedStream((4, 16, 16), seeds))
    assert torch.equal(out[0, :, :, :8], fresh_from_seed(7, (4, 16, 16))[:, :, :8])
    assert torch.equal(out[0, :, :, 8:], base[0, :, :, 8:])
    assert torch.equal(out[1, :, :, 8:], fresh_from_seed(8, (4, 16, 16))[:, :, 8:])
    g7 = torch.Generator().manual_seed(7)
    torch.randn(4, 16, 16, generator=g7)  # the first draw went to x_T
    later = plan.blend_next(torch.zeros(2, 4, 16, 16))
    assert torch.equal(later[0, :, :, :8], torch.randn(4, 16, 16, generator=g7)[:, :, :8])
    assert torch.equal(later[1, :, :, :8], torch.zeros(4, 16, 8))


def test_nothing_selected_gives_no_plan():
    base = fresh_from_seed(1, (4, 16, 16))[None]
    out, plan = reroll_batch(base, [[RerollRegion(box=(0, 0, 1, 1), seed=3, strength=0.0)]],
                             lambda seeds: SeedStream((4, 16, 16), seeds))
    assert plan is None and out is base
