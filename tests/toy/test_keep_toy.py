"""Keep the rest on the toy model (DDIM + CFG): the outside of a rerolled region follows the base generation
exactly during the kept steps, through the shipped path (noise.reroll_batch + lib_initedit.reroll.keep)."""
from __future__ import annotations

import pytest
import torch

from lib_initedit.reroll.keep import KeepBlend, Recorder
from lib_initedit.reroll.noise import reroll_batch
from lib_initedit.reroll.release import band_cells_mask
from lib_initedit.sampling_hooks import SamplingHooks
from lib_initedit.spec import RerollRegion
from lib_initedit.toy.data import SIZE
from lib_initedit.toy.model import load
from lib_initedit.toy.pipe import SeedStream, ToyPipe, seed_noise
from lib_initedit.toy.schedule import ddim_sample

torch.set_num_threads(1)
STEPS = 8
BOX = (0.25, 0.25, 0.75, 0.625)  # block-aligned at 32x32: rows 8..19, cols 8..23
CAP = "a red circle and a blue square"


@pytest.fixture(scope="module")
def pipe():
    return ToyPipe(load(), steps=STEPS)


def streams(shape):
    return lambda seeds: SeedStream(shape, seeds)


def inside_mask(box=BOX):
    m = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    x0, y0, x1, y1 = (round(v * SIZE) for v in box)
    m[y0:y1, x0:x1] = True
    return m.expand(3, SIZE, SIZE)


def sample_seeing(pipe, x_T, caps, hook):
    """DDIM as ToyPipe.generate runs it, also returning the x the UNet saw at every step."""
    seen = []

    def unet(x, t, context):
        seen.append(x[: x.shape[0] // 2].clone())  # the batch is [x, x] for uncond / cond
        return pipe.unet(x, t, context=context)

    c = pipe.cond(caps)
    out = ddim_sample(unet, x_T, c, pipe.cond([""]).expand_as(c), STEPS, pipe.guidance, hooks=SamplingHooks([hook]))
    return out, seen


def base_and_reroll(n=1, seed=4, box=BOX, feather=0.0):
    base = seed_noise(seed)[None].expand(n, 3, SIZE, SIZE)
    regions = [[RerollRegion(box=box, seed=500 + i, feather=feather)] for i in range(n)]
    x, _ = reroll_batch(base, regions, streams(base.shape[1:]))
    return base, x, regions


def test_keep_1_final_image_outside_is_the_base_exactly(pipe):
    base, x, regions = base_and_reroll()
    rec = Recorder()
    img0 = pipe.generate(base, [CAP], hooks=SamplingHooks([rec]))
    assert torch.equal(img0, pipe.generate(base, [CAP]))  # recording changes nothing
    free = pipe.generate(x, [CAP])
    blend = KeepBlend.from_regions(rec.records, regions, (SIZE, SIZE), 1.0)
    kept = pipe.generate(x, [CAP], hooks=SamplingHooks([blend]))
    out = ~inside_mask()
    assert torch.equal(kept[0][out], img0[0][out])
    assert (free[0][out] - img0[0][out]).abs().mean() > 1e-3  # without keep the outside moves
    inside = inside_mask()
    assert (kept[0][inside] - img0[0][inside]).abs().mean() > 0.02  # the region changed (how much: bench_reroll)


def test_the_trajectory_outside_is_the_base_one_during_the_kept_steps(pipe):
    base, x, regions = base_and_reroll()
    rec = Recorder()
    _, seen_base = sample_seeing(pipe, base, [CAP], rec)
    _, seen = sample_seeing(pipe, x, [CAP], KeepBlend.from_regions(rec.records, regions, (SIZE, SIZE), 0.5))
    out = ~inside_mask()
    for i in range(STEPS // 2 + 1):  # the inputs of steps 0..4 are the results of x_T and the 4 kept steps
        assert torch.equal(seen[i][0][out], seen_base[i][0][out]), i
    assert not torch.equal(seen[STEPS - 1][0][out], seen_base[STEPS - 1][0][out])  # later it runs free


def test_keep_0_is_the_reroll_as_it_was(pipe):
    base, x, regions = base_and_reroll()
    rec = Recorder()
    pipe.generate(base, [CAP], hooks=SamplingHooks([rec]))
    blend = KeepBlend.from_regions(rec.records, regions, (SIZE, SIZE), 0.0)
    assert torch.equal(pipe.generate(x, [CAP], hooks=SamplingHooks([blend])), pipe.generate(x, [CAP]))


def test_feathered_edge_follows_the_base_outside_and_blends_inside(pipe):
    base, x, regions = base_and_reroll(feather=0.1)
    rec = Recorder()
    img0 = pipe.generate(base, [CAP], hooks=SamplingHooks([rec]))
    blend = KeepBlend.from_regions(rec.records, regions, (SIZE, SIZE), 1.0)
    kept = pipe.generate(x, [CAP], hooks=SamplingHooks([blend]))
    assert torch.equal(kept[0][~inside_mask()], img0[0][~inside_mask()])


def test_batch_of_variants_shares_one_base_and_the_outside_is_identical_at_keep_1(pipe):
    """vary "reroll": every image has the base seed, image i the reroll seed 500 + i; one record serves all."""
    base, x, regions = base_and_reroll(n=4)
    rec = Recorder()
    img0 = pipe.generate(base[:1], [CAP], hooks=SamplingHooks([rec]))
    assert len(rec.records) == 1
    blend = KeepBlend.from_regions(rec.records * 4, regions, (SIZE, SIZE), 1.0)
    kept = pipe.generate(x, [CAP] * 4, hooks=SamplingHooks([blend]))
    out, inside = ~inside_mask(), inside_mask()
    for i in range(4):
        assert torch.equal(kept[i][out], img0[0][out])
        if i:
            assert (kept[i][inside] - kept[0][inside]).abs().mean() > 1e-2  # the variants differ inside


# ---------------------------------------------------------------- the release map: a band released gradually
BAND = 0.1  # 3.2 cells at 32x32


def test_with_a_band_the_outside_beyond_it_is_the_base_exactly_and_the_band_moves(pipe):
    base, x, regions = base_and_reroll()
    rec = Recorder()
    img0 = pipe.generate(base, [CAP], hooks=SamplingHooks([rec]))
    hard_blend = KeepBlend.from_regions(rec.records, regions, (SIZE, SIZE), 1.0)
    hard = pipe.generate(x, [CAP], hooks=SamplingHooks([hard_blend]))
    blend = KeepBlend.from_regions(rec.records, regions, (SIZE, SIZE), 1.0, band=BAND)
    kept = pipe.generate(x, [CAP], hooks=SamplingHooks([blend]))
    in_band = band_cells_mask(regions[0], SIZE, SIZE, BAND).expand(3, SIZE, SIZE)
    beyond = ~inside_mask() & ~in_band
    assert int(in_band[0].sum()) > 100 and int(beyond[0].sum()) > 400
    assert torch.equal(kept[0][beyond], img0[0][beyond])  # bit for bit: the toy's image is its latent
    assert (kept[0][in_band] - img0[0][in_band]).abs().mean() > 1e-3  # the band adapts to the new content
    inside = inside_mask()
    assert (kept[0][inside] - hard[0][inside]).abs().mean() > 1e-3  # and the region is not the band-less one


def test_the_ddim_trajectory_follows_the_base_wherever_the_map_says_follow(pipe):
    base, x, regions = base_and_reroll()
    rec = Recorder()
    _, seen_base = sample_seeing(pipe, base, [CAP], rec)
    blend = KeepBlend.from_regions(rec.records, regions, (SIZE, SIZE), 1.0, band=BAND)
    _, seen = sample_seeing(pipe, x, [CAP], blend)
    follows = 0
    for i in range(STEPS):  # the UNet input of step i and of step i + 1: the base's where the map says follow at i
        follow = ((blend.masks[0] == 0) & (blend.release[0] > i)).expand(3, SIZE, SIZE)
        assert torch.equal(seen[i][0][follow], seen_base[i][0][follow]), i
        if i + 1 < STEPS:
            assert torch.equal(seen[i + 1][0][follow], seen_base[i + 1][0][follow]), i
        released = (blend.release[0] <= i).expand(3, SIZE, SIZE) & ~inside_mask()
        if i + 1 < STEPS and released.any():
            assert not torch.equal(seen[i + 1][0][released], seen_base[i + 1][0][released])  # free once released
        follows += int(follow[0].sum())
    assert follows > 0


def test_batch_of_variants_with_a_band_is_identical_beyond_it(pipe):
    base, x, regions = base_and_reroll(n=3)
    rec = Recorder()
    img0 = pipe.generate(base[:1], [CAP], hooks=SamplingHooks([rec]))
    blend = KeepBlend.from_regions(rec.records * 3, regions, (SIZE, SIZE), 1.0, band=BAND)
    kept = pipe.generate(x, [CAP] * 3, hooks=SamplingHooks([blend]))
    alone = pipe.generate(x[1:2], [CAP], hooks=SamplingHooks([KeepBlend.from_regions(
        rec.records, regions[1:2], (SIZE, SIZE), 1.0, band=BAND)]))
    beyond = ~inside_mask() & ~band_cells_mask(regions[0], SIZE, SIZE, BAND).expand(3, SIZE, SIZE)
    for i in range(3):
        assert torch.equal(kept[i][beyond], img0[0][beyond])
    assert torch.allclose(kept[1], alone[0], atol=1e-5)  # in a batch as alone (up to the UNet's batch arithmetic)
