"""'Keep the rest' through the real WebUI (tiny checkpoint): the outside of a rerolled region follows the
image without the reroll; a cache hit and a miss give the same image; batches of variants share the outside."""
import os

import numpy as np
import pytest

from tests.webui.helpers import infotext_without, initedit_of, pixels, reproduce

BOX = [0.25, 0.25, 0.75, 0.75]
SIZE = 128


def region(seed=77, **extra):
    return {"reroll": [{"box": BOX, "seed": seed, "strength": 1.0, **extra}]}


def outside_mask(margin=0):
    """Pixels at least ``margin`` px outside the box."""
    m = np.ones((SIZE, SIZE), bool)
    x0, y0, x1, y1 = (int(round(v * SIZE)) for v in BOX)
    m[max(0, y0 - margin):y1 + margin, max(0, x0 - margin):x1 + margin] = False
    return m


def change(a, b, mask):
    return float(np.abs(a - b)[mask].mean())


def gen(webui, spec=None, **fields):
    fields.setdefault("width", SIZE)
    fields.setdefault("height", SIZE)
    fields.setdefault("steps", 8)
    return webui.txt2img(spec, **fields)


SAMPLERS = ["Euler", "Euler a", "DPM++ 2M", "Heun", "DPM++ 2M SDE", "DDIM"]


def latest_latent(count=1):
    """The last first-pass latent saved by tests/tooling/lab_ext_latent_probe (see its doc)."""
    import glob

    import torch

    folder = os.environ.get("INITEDIT_LATENT_DIR")
    files = sorted(glob.glob(os.path.join(folder or "/nonexistent", "*.pt")), key=os.path.getmtime)
    if not files:
        pytest.skip("latent checks need the latent-probe test extension and INITEDIT_LATENT_DIR (see its doc)")
    return torch.cat([torch.load(f)["latents"] for f in files[-count:]])


def latent_outside(latent):
    import torch

    h, w = latent.shape[-2:]
    out = torch.ones(h, w, dtype=torch.bool)
    out[int(BOX[1] * h):int(BOX[3] * h), int(BOX[0] * w):int(BOX[2] * w)] = False
    return out


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_keep_1_outside_is_the_base_latent_bit_for_bit(webui, sampler):
    """keep 1 without a band: every latent element outside the box is the base's."""
    gen(webui, seed=5, sampler_name=sampler)
    base = latest_latent()
    gen(webui, {**region(), "keep": 1.0, "keep_band": 0.0}, seed=5, sampler_name=sampler)
    kept = latest_latent()
    gen(webui, {**region(), "keep": 0.0}, seed=5, sampler_name=sampler)
    free = latest_latent()
    out = latent_outside(base)
    assert float((kept - base)[..., out].abs().max()) == 0.0
    assert float((free - base)[..., out].abs().max()) > 0.0  # without keep the outside moves
    assert float((kept - base)[..., ~out].abs().mean()) > 0.5 * float((free - base)[..., ~out].abs().mean())


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_the_default_keep_is_the_base_latent_beyond_the_band_and_the_band_adapts(webui, sampler):
    """keep 1 with the default band: beyond the band the latent is the base's, bit for bit; in the band it moves."""
    import torch

    from lib_initedit.reroll.release import band_cells_mask, region_cells
    from lib_initedit.spec import InitEditSpec, RerollRegion

    gen(webui, seed=5, sampler_name=sampler)
    base = latest_latent()
    js = gen(webui, region(), seed=5, sampler_name=sampler)
    kept = latest_latent()
    band = InitEditSpec().keep_band
    assert initedit_of(js)["keep_band"] == band > 0
    h, w = base.shape[-2:]
    box = [RerollRegion(box=tuple(BOX))]
    inside = region_cells(box, h, w)
    near = inside | band_cells_mask(box, h, w, band)
    assert bool((~near).any()) and torch.equal(kept[..., ~near], base[..., ~near])
    assert not torch.equal(kept[..., near & ~inside], base[..., near & ~inside])


@pytest.mark.parametrize("sampler", ["Euler", "Euler a", "DPM++ 2M SDE"])
def test_keep_1_pixels_outside_change_far_less_than_keep_0(webui, sampler):
    """In pixels the VAE decoder's reach (its mid-block attention sees the whole latent) still carries a
    little of the region's change outside; far from the box it is a fraction of keep 0's."""
    base = pixels(gen(webui, seed=5, sampler_name=sampler))
    free = pixels(gen(webui, {**region(), "keep": 0.0}, seed=5, sampler_name=sampler))
    kept = pixels(gen(webui, {**region(), "keep": 1.0, "keep_band": 0.0}, seed=5, sampler_name=sampler))
    new_seed = pixels(gen(webui, seed=6, sampler_name=sampler))
    far, inside = outside_mask(margin=16), ~outside_mask()
    assert change(kept, base, inside) > 0.5 * change(free, base, inside)  # the region really changed
    assert change(kept, base, far) < 0.5 * change(free, base, far)
    assert change(kept, base, far) < 0.1 * change(new_seed, base, far)


def test_cache_hit_and_miss_give_the_same_image(webui):
    """A miss generates the base first inside the request; a hit reuses the recorded one: same pixels."""
    spec = {**region(seed=91), "keep": 0.6}
    gen(webui, seed=21)  # records seed 21's base
    hit = pixels(gen(webui, spec, seed=21))
    miss = pixels(gen(webui, spec, seed=21, override_settings={"initedit_keep_cache_mb": 0}))
    assert np.array_equal(hit, miss)


def test_keep_0_is_the_reroll_as_it_was_and_the_infotext_says_so(webui):
    whole = gen(webui, {"reroll": [{"box": [0, 0, 1, 1], "seed": 77}], "keep": 0.0}, seed=5)
    assert np.array_equal(pixels(whole), pixels(gen(webui, seed=77)))
    assert initedit_of(whole)["keep"] == 0.0


def test_batch_of_variants_shares_the_outside(webui):
    """vary "reroll", keep 1: four variants of the region (batch 2 x count 2); the outside is the same latent
    in all of them, bit for bit, and the same as the image without the reroll."""
    gen(webui, seed=8)
    base = latest_latent()
    js = gen(webui, {**region(seed=300), "keep": 1.0, "keep_band": 0.0, "vary": "reroll"}, seed=8, batch_size=2,
             n_iter=2)
    latents = latest_latent(count=2)
    out = latent_outside(base)
    assert latents.shape[0] == 4
    for i in range(4):
        assert float((latents[i] - base[0])[..., out].abs().max()) == 0.0
    images = [pixels(js, i) for i in range(4)]
    for img in images[1:]:
        assert change(img, images[0], ~outside_mask()) > 5.0  # the variants differ inside


def test_keep_with_hires_fix_runs_and_is_recorded(webui):
    js = gen(webui, {**region(), "keep": 1.0}, seed=5, enable_hr=True, hr_scale=1.5, hr_upscaler="Latent",
             denoising_strength=0.5, hr_second_pass_steps=4)
    assert initedit_of(js)["keep"] == 1.0
    assert "InitEdit error" not in js["info"]["infotexts"][0]


@pytest.mark.parametrize("sampler, second_order", [("Euler", False), ("Heun", True), ("DPM2", True)])
def test_keep_counts_the_samplers_steps_and_old_infotexts_count_calls(webui, sampler, second_order):
    """keep 0.5 of 8 steps keeps 4 steps (Heun, DPM2: both calls of each); an infotext written before
    fraction_of kept floor(0.5 x the calls) calls: the same image on Euler (one call a step), another on the
    second-order samplers, and such an infotext still reproduces its own image."""
    spec = {**region(seed=91), "keep": 0.5, "keep_band": 0.0}
    by_steps = gen(webui, spec, seed=21, sampler_name=sampler)
    assert initedit_of(by_steps)["fraction_of"] == "steps"
    by_calls = gen(webui, {**spec, "fraction_of": "calls"}, seed=21, sampler_name=sampler)
    assert np.array_equal(pixels(by_steps), pixels(by_calls)) != second_order
    assert np.array_equal(pixels(reproduce(webui, infotext_without(by_calls, "fraction_of"))), pixels(by_calls))


def test_an_infotext_from_before_keep_release_reproduces_its_hard_band(webui):
    """Infotexts written before keep_release existed released the band all or nothing ("hard"): without the
    field they still give their own image; today's default ("soft") gives another."""
    spec = {**region(seed=91), "keep": 1.0, "keep_band": 0.1}
    hard = gen(webui, {**spec, "keep_release": "hard"}, seed=21)
    assert np.array_equal(pixels(reproduce(webui, infotext_without(hard, "keep_release"))), pixels(hard))
    soft = gen(webui, spec, seed=21)
    assert initedit_of(soft)["keep_release"] == "soft" and not np.array_equal(pixels(soft), pixels(hard))
