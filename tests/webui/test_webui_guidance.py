"""Layout guidance through the real WebUI (tiny checkpoints): it changes the sampling, composes with an
IP-Adapter-style forward patch, and leaves every forward as it found it after success, error and interrupt.

The forward and hook checks use the test-only extension tests/tooling/lab_ext_test_probe (its route
``/initedit-test/unet`` and its "Fake IP-Adapter" script); they skip when the server does not have it.
"""

import numpy as np
import pytest

from tests.webui.helpers import infotext, infotext_without, initedit_of, interrupt_mid_sampling, pixels, reproduce

BOXES = [{"phrase": "cat", "box": [0, 0, 0.5, 1]}, {"phrase": "red car", "box": [0.5, 0, 1, 1]}]
GUIDED = {"layout": BOXES, "guidance": 6.0, "guidance_steps": 0.5}
UNGUIDED = {"layout": BOXES, "guidance": 0.0}


def unet_state(webui):
    status, state = webui.get("/initedit-test/unet")
    if status != 200:
        pytest.skip("the server lacks the test-only extension tests/tooling/lab_ext_test_probe")
    return state


def fake_ip(on=True, fail_at=0):
    return {"Fake IP-Adapter (InitEdit tests)": {"args": [on, fail_at]}}


def test_guidance_changes_the_image_and_is_recorded(webui):
    guided = webui.txt2img(GUIDED, steps=8, seed=3)
    unguided = webui.txt2img(UNGUIDED, steps=8, seed=3)
    assert not np.array_equal(pixels(guided), pixels(unguided))
    spec = initedit_of(guided)
    assert spec["guidance"] == 6.0 and spec["guidance_steps"] == 0.5
    again = webui.txt2img(GUIDED, steps=8, seed=3)
    assert np.array_equal(pixels(again), pixels(guided))  # deterministic


def test_an_infotext_from_before_guidance_reproduces_its_image(webui):
    """An old infotext has no "guidance" / "guidance_steps": it is read as guidance 0 whatever today's
    default is, so it reproduces the image it was written with."""
    old = webui.txt2img({"layout": BOXES, "guidance": 0.0}, steps=6, seed=4)
    text = infotext_without(old, "guidance", "guidance_steps", "guidance_core", "guidance_units", "guidance_layers",
                            "fraction_of")
    assert "guidance" not in text
    assert np.array_equal(pixels(reproduce(webui, text)), pixels(old))
    now = webui.txt2img({"layout": BOXES}, steps=6, seed=4)  # today's default guidance: another image
    assert not np.array_equal(pixels(now), pixels(old))


def test_an_infotext_from_before_guidance_core_reproduces_its_image(webui):
    """Infotexts written with guidance but before "guidance_core" existed (the whole box pulled) are read
    with guidance_core 1 and reproduce; today's default (0.7) changes the image of a large box."""
    large = {"layout": [{"phrase": "cat", "box": [0, 0, 0.8, 1]}], "guidance": 8.0, "guidance_steps": 0.5}
    old = webui.txt2img({**large, "guidance_core": 1.0}, steps=6, seed=5)
    text = infotext_without(old, "guidance_core")
    assert "guidance_core" not in text
    assert np.array_equal(pixels(reproduce(webui, text)), pixels(old))
    now = webui.txt2img(large, steps=6, seed=5)
    assert initedit_of(now)["guidance_core"] == 0.7 and not np.array_equal(pixels(now), pixels(old))


@pytest.mark.parametrize("sampler, second_order", [("Euler", False), ("Heun", True)])
def test_guidance_counts_the_samplers_steps_and_old_infotexts_count_calls(webui, sampler, second_order):
    """guidance_steps 0.5 of 8 steps guides the calls placed before step 4 (Heun: 7 calls; its second call of
    step 3 evaluates at step 4's level); an infotext written before fraction_of guided the calls before
    0.5 x the WebUI's budget (Heun: 16, so 8 calls): the same on Euler, another image on Heun; such an
    infotext still reproduces its own image."""
    by_steps = webui.txt2img(GUIDED, steps=8, seed=3, sampler_name=sampler)
    assert initedit_of(by_steps)["fraction_of"] == "steps"
    by_calls = webui.txt2img({**GUIDED, "fraction_of": "calls"}, steps=8, seed=3, sampler_name=sampler)
    assert np.array_equal(pixels(by_steps), pixels(by_calls)) != second_order
    text = infotext_without(by_calls, "fraction_of")
    assert "fraction_of" not in text
    assert np.array_equal(pixels(reproduce(webui, text)), pixels(by_calls))


def test_forwards_and_hooks_are_restored_after_success(webui):
    before = unet_state(webui)
    webui.txt2img(GUIDED, steps=6)
    webui.txt2img({**GUIDED, "reroll": [{"box": [0, 0, 0.5, 0.5], "seed": 9}], "keep": 0.5}, steps=6)
    assert unet_state(webui) == before == {"instance_forwards": 0, "hooks": 0}


def test_guidance_composes_with_an_ip_adapter_style_forward_patch(webui):
    unet_state(webui)
    ip_only = pixels(webui.txt2img(UNGUIDED, steps=6, seed=5, alwayson_scripts=fake_ip()))
    guided_only = pixels(webui.txt2img(GUIDED, steps=6, seed=5))
    both = pixels(webui.txt2img(GUIDED, steps=6, seed=5, alwayson_scripts=fake_ip()))
    plain = pixels(webui.txt2img(UNGUIDED, steps=6, seed=5))
    assert not np.array_equal(ip_only, plain)  # the patch does something
    assert not np.array_equal(both, guided_only)  # ...and still does it while guidance wraps it
    assert not np.array_equal(both, ip_only)  # ...and guidance does something on top of it
    assert unet_state(webui) == {"instance_forwards": 0, "hooks": 0}  # the patch could remove itself


def test_interrupt_during_guided_sampling_restores_everything(webui):
    unet_state(webui)
    step, steps = interrupt_mid_sampling(webui, lambda: webui.txt2img({**GUIDED, "guidance_steps": 1.0}, steps=60,
                                                                      width=256, height=256))
    assert 0 < step < steps - 1  # every step is guided: the wrapped forwards were in place at the interrupt
    assert unet_state(webui) == {"instance_forwards": 0, "hooks": 0}
    a = pixels(webui.txt2img(UNGUIDED, steps=4, seed=1))
    b = pixels(webui.txt2img(UNGUIDED, steps=4, seed=1))
    assert np.array_equal(a, b)


def test_an_error_inside_the_unet_during_guided_sampling_restores_everything(webui):
    unet_state(webui)
    body = {"prompt": "a cat and a red car", "width": 64, "height": 64, "steps": 8, "seed": 1,
            "alwayson_scripts": {"InitEdit": {"args": [{**GUIDED, "guidance_steps": 1.0}]}, **fake_ip(False, 5)}}
    status, _ = webui.request("POST", "/sdapi/v1/txt2img", body)
    assert status != 200  # the failure reached the WebUI (after the probe, mid-sampling)
    assert unet_state(webui) == {"instance_forwards": 0, "hooks": 0}
    a = pixels(webui.txt2img(UNGUIDED, steps=4, seed=1))
    assert np.array_equal(a, pixels(webui.txt2img(UNGUIDED, steps=4, seed=1)))


def test_guidance_with_hires_fix_lora_and_batches(webui):
    js = webui.txt2img(GUIDED, steps=4, enable_hr=True, hr_scale=1.5, hr_upscaler="Latent", denoising_strength=0.5,
                       hr_second_pass_steps=3, batch_size=2)
    assert len(js["images"]) == 2 and "InitEdit error" not in infotext(js)
    prompt = "a cat and a red car <lora:tiny-lora-sd15:0.5>"
    status, _ = webui.request("POST", "/sdapi/v1/txt2img", {"prompt": prompt, "width": 64, "height": 64, "steps": 4,
                                                           "seed": 1, "send_images": False})
    if status != 200:
        pytest.skip("the tiny LoRA makes the tiny checkpoint fail by itself (NaN), InitEdit or not")
    lora = webui.txt2img(GUIDED, prompt=prompt, steps=4)
    assert initedit_of(lora)["guidance"] == 6.0 and "InitEdit note" not in infotext(lora)


def test_guidance_on_sdxl(webui, checkpoints):
    title = next((t for name, t in checkpoints.items() if "sdxl" in name), None)
    if title is None:
        pytest.skip("no tiny-sdxl checkpoint on this server")
    guided = webui.txt2img(GUIDED, checkpoint=title, steps=4, width=128, height=128, seed=2)
    unguided = webui.txt2img(UNGUIDED, checkpoint=title, steps=4, width=128, height=128, seed=2)
    assert "InitEdit error" not in infotext(guided) and "InitEdit note" not in infotext(guided)
    assert not np.array_equal(pixels(guided), pixels(unguided))
