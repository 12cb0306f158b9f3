"""SD 2.x (v-prediction, OpenCLIP) in a real WebUI: the tiny ``tiny-sd2v`` checkpoint (tests/tooling/make_tiny_sd2.py).

With ``INITEDIT_WEBUI_DIR`` a server of its own is started on tiny-sd2v, with a test-only extension that records
the UNet's inputs (conftest.CAPTURE_SCRIPT): that is how the probe's input is compared with the sampler's.
With ``INITEDIT_WEBUI_URL`` the running server is asked for tiny-sd2v per request (override_settings) and the
capture tests skip. Without tiny-sd2v in the models folder: skipped, saying how to build it.

Why the probe's input scale is right for v-prediction: the probe calls ``sd_model.apply_model(x * scale, t, cond)``
directly with ``scale = sqrt(1 - alphas_cumprod[-1])`` (``host.first_timestep``). The sampler's first call goes
through k-diffusion's ``CompVisVDenoiser``, whose ``c_in = 1 / sqrt(sigma^2 + sigma_data^2)`` with
``sigma_data = 1`` is the same as ``CompVisDenoiser``'s ``1 / sqrt(sigma^2 + 1)``: the UNet sees
``x * sigma_max * c_in = x * sqrt(1 - alphas_cumprod[-1])`` for both parameterisations (only c_skip/c_out, the
output side, differ). Timestep samplers (DDIM, PLMS, UniPC) give x unscaled, v or eps. The test below does not
rely on this argument: it compares the UNet input of the probe with the UNet input of the sampler's first call.
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.webui.helpers import (LAYOUT, WHOLE, captured_webui, check_probe_matches_first_call, infotext, initedit_of,
                                 pixels)

NAME = "tiny-sd2v"
BUILD_HINT = "run tests/tooling/make_tiny_sd2.py with the lab's python (it writes tiny-sd2v into the models folder)"


@pytest.fixture(scope="module")
def sd2():
    yield from captured_webui(NAME, BUILD_HINT)


@pytest.fixture(scope="module")
def baseline(sd2):
    return pixels(sd2.gen())


def test_the_model_is_an_sd2_v_model(sd2, baseline):
    js = sd2.gen()
    assert f"Model: {NAME}" in infotext(js)
    assert baseline.std() > 1  # an image, not a constant (NaN decodes to black)
    _, meta = sd2.calls()
    assert meta["parameterization"] == "v" and meta["is_sd2"], meta
    assert meta["cond_stage_model"] == "FrozenOpenCLIPEmbedderWithCustomWords", meta


def test_disabled_and_empty_change_nothing(sd2, baseline):
    assert np.array_equal(pixels(sd2.gen([False, '{"reroll": [{"box": [0, 0, 1, 1], "seed": 4242}]}'])), baseline)
    js = sd2.gen({})
    assert np.array_equal(pixels(js), baseline)
    assert "InitEdit" not in infotext(js)


@pytest.mark.parametrize("sampler", ["Euler", "Euler a", "DDIM", "DPM++ 2M", "DPM++ 2M SDE"])
def test_whole_image_reroll_is_the_reroll_seeds_image(sd2, sampler):
    assert np.array_equal(pixels(sd2.gen(WHOLE, sampler_name=sampler)), pixels(sd2.gen(seed=4242, sampler_name=sampler)))


def test_vary_reroll_batch_is_a_plain_batch_of_the_reroll_seeds(sd2):
    """Euler a (per-step noise through p.rng): image i with seed S and reroll seed R+i = plain image of seed R+i."""
    js = sd2.gen({**WHOLE, "vary": "reroll"}, sampler_name="Euler a", batch_size=2, seed=5)
    plain = sd2.gen(sampler_name="Euler a", batch_size=2, seed=4242)
    assert [initedit_of(js, i)["reroll"][0]["seed"] for i in range(2)] == [4242, 4243]
    assert all(np.array_equal(pixels(js, i), pixels(plain, i)) for i in range(2))


def test_partial_box_rerolls_only_the_noise_inside(sd2):
    """Exact, model-independent: the UNet input of the sampler's first call (x_T scaled) is the plain one's
    outside the box and differs inside (latent 16x16, box = the top-left 8x8). keep 0: 'Keep the rest' would
    first generate the base image on a cache miss, and this is about the noise edit alone."""
    spec = {"reroll": [{"box": [0, 0, 0.5, 0.5], "seed": 7}], "keep": 0}
    rerolled = sd2.gen(spec, width=128, height=128)
    edited = sd2.calls()[0][0]["x"]
    plain = sd2.gen(width=128, height=128)
    base = sd2.calls()[0][0]["x"]
    outside = np.ones(base.shape[-2:], bool)
    outside[:8, :8] = False
    assert np.array_equal(edited[..., outside], base[..., outside])
    assert not np.allclose(edited[..., :8, :8], base[..., :8, :8])
    # in pixels the change is larger inside, but a random-weight v-model spreads it further than an eps model:
    # at sigma_max its x0 estimate is almost -v(x), the UNet's output, whose receptive field covers the whole
    # 16x16 latent (tiny-sd2v: inside/outside mean |diff| ~1.75, against > 2 for tiny-sd15)
    diff = np.abs(pixels(rerolled) - pixels(plain)).sum(-1)
    inside = diff[:64, :64].mean()
    outside_px = np.concatenate([diff[64:].ravel(), diff[:64, 64:].ravel()]).mean()
    assert inside > 1.25 * outside_px, (inside, outside_px)


def test_layout_runs_with_heatmaps_and_records_the_spec(sd2):
    js = sd2.gen({**LAYOUT, "heatmaps": True}, width=128, height=128)
    assert len(js["images"]) == 2  # the image and its heatmap sheet
    assert initedit_of(js)["layout"] == LAYOUT["layout"]
    assert "InitEdit note" not in infotext(js) and "InitEdit error" not in infotext(js)
    again = sd2.gen({**LAYOUT, "heatmaps": True}, width=128, height=128)
    assert np.array_equal(pixels(js), pixels(again))


PROBE_CASES = [
    ("Euler", {}), ("Euler a", {}), ("DPM++ 2M", {}), ("DDIM", {}), ("PLMS", {}), ("UniPC", {}),
    ("Euler", {"sgm_noise_multiplier": True}),
    ("Euler", {"sd_noise_schedule": "Zero Terminal SNR"}),
]


@pytest.mark.parametrize("sampler,settings", PROBE_CASES, ids=[f"{s}-{','.join(o) or 'default'}" for s, o in PROBE_CASES])
def test_probe_sees_what_the_sampler_sees(sd2, sampler, settings):
    """The probe's UNet input (x, t, context) = the conditional row of the sampler's first UNet call
    (conftest.check_probe_matches_first_call), on the v-prediction model."""
    meta = check_probe_matches_first_call(sd2, sampler, settings)
    assert meta["parameterization"] == "v"
