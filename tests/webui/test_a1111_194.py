"""A1111 before 1.10 (1.6-1.9; the lab builds 1.9.4): there is no ``process_before_every_sampling``, so InitEdit
edits the initial noise on the sampler's first draw from ``p.rng`` (``controller.on_process_batch`` installs
``noise_stream.FirstDrawHook`` in ``process_batch``; the edit runs inside ``p.sample``, after the sampler was
created and ``p.c`` exists).

tests/webui/test_api.py runs unchanged against such a WebUI (conftest passes the launch arguments 1.9 needs).
These add what is specific to the fallback, on a server of their own with the UNet input capture
(conftest.CAPTURE_SCRIPT): that the fallback is the path in use, and that the probe sees exactly the UNet input
of the sampler's first call there. On 1.10+ the fallback test skips; the probe check runs on any version.

    INITEDIT_WEBUI_DIR=$HOME/webui-lab-194/stable-diffusion-webui INITEDIT_WEBUI_MODELS=$HOME/webui-lab-194/models \\
        python3 -m pytest -q tests/webui/test_a1111_194.py tests/webui/test_api.py
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.webui.helpers import captured_webui, check_probe_matches_first_call, pixels

NAME = "tiny-sd15"
WHOLE = {"reroll": [{"box": [0, 0, 1, 1], "seed": 4242, "strength": 1.0}]}
LAYOUT = {"layout": [{"phrase": "cat", "box": [0, 0, 0.5, 1]}, {"phrase": "red car", "box": [0.5, 0, 1, 1]}]}


@pytest.fixture(scope="module")
def sd1():
    yield from captured_webui(NAME, "build the lab (shared/webui-lab/setup.sh)")


def test_the_fallback_is_the_path_in_use(sd1):
    js = sd1.gen(WHOLE, sampler_name="Euler a")
    _, meta = sd1.calls()
    if meta["has_process_before_every_sampling"]:
        pytest.skip("this WebUI has process_before_every_sampling (1.10+): InitEdit does not use the fallback")
    assert meta["rng"] == "FirstDrawHook", meta  # p.rng of the batch, as the fallback left it
    assert np.array_equal(pixels(js), pixels(sd1.gen(seed=4242, sampler_name="Euler a")))


PROBE_CASES = [("Euler", {}), ("Euler a", {}), ("DPM++ 2M", {}), ("DDIM", {}), ("PLMS", {}), ("UniPC", {}),
               ("Euler", {"sgm_noise_multiplier": True})]


@pytest.mark.parametrize("sampler,settings", PROBE_CASES, ids=[f"{s}-{','.join(o) or 'default'}" for s, o in PROBE_CASES])
def test_probe_sees_what_the_sampler_sees(sd1, sampler, settings):
    check_probe_matches_first_call(sd1, sampler, settings)


def test_second_batch_of_a_batch_count_is_probed_on_its_own_noise(sd1):
    """n_iter 2: a new p.rng per batch, so a new FirstDrawHook per batch (1.9) / a new call (1.10); the probe of the
    second batch sees that batch's noise: image 1 equals image 0 of a run whose seed is the second one."""
    js = sd1.gen(LAYOUT, n_iter=2, seed=10)
    alone = sd1.gen(LAYOUT, seed=11)
    assert js["info"]["all_seeds"] == [10, 11]
    assert np.array_equal(pixels(js, 1), pixels(alone, 0))



def test_keep_reuses_the_remembered_plain_pass(sd1):
    """'Keep the rest' after a plain generation of the same seed: the base comes from the cache, so the request
    runs the UNet as often as the plain one did (a miss samples the base first: twice as often)."""
    spec = {"reroll": [{"box": [0.25, 0.25, 0.75, 0.75], "seed": 91}], "keep": 0.6}
    sd1.gen(seed=21)
    _, plain = sd1.calls()
    js = sd1.gen(spec, seed=21)
    _, meta = sd1.calls()
    assert "InitEdit error" not in js["info"]["infotexts"][0]
    assert meta["unet_calls"] == plain["unet_calls"], (meta["unet_calls"], plain["unet_calls"])
