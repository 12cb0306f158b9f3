"""InitEdit in Forge (the ``backend/`` line: lllyasviel's Forge 2 ``main``, Forge Neo), through its API.

Either ``INITEDIT_FORGE_URL``: a running Forge with InitEdit installed (e.g. ``tests/tooling/forge_lab.sh
link && tests/tooling/forge_lab.sh run 7870``), or ``INITEDIT_FORGE_DIR``: an installed Forge (the lab's
``$FORGE_LAB/webui``), with ``INITEDIT_FORGE_PYTHON`` (default DIR/../venv/bin/python) and
``INITEDIT_FORGE_MODELS`` (default DIR/../models, holding ``Stable-diffusion/tiny-forge-sd15.safetensors``);
then a server is started on a free loopback port with a temporary data dir linking this checkout, plus a
small test extension that registers attn2 *replace* patches on a UNet clone (as IP-Adapter does).
Without either: skipped. Images are compared as decoded pixels (the PNGs carry the infotext).
"""
from __future__ import annotations

import base64
import io
import json
import os

import numpy as np
import pytest

from tests.webui.forge_family import keep_by_steps_and_by_calls, start_forge_family
from tests.webui.helpers import WebUI, check_nothing_left_behind, infotext, initedit_of, pixels, stop_server

pytestmark = pytest.mark.lab  # needs the Forge lab (tests/tooling/forge_lab.sh)

SKIP_REASON = ("no Forge given: set INITEDIT_FORGE_URL to a running Forge with InitEdit installed, or "
               "INITEDIT_FORGE_DIR to an installed Forge (tests/tooling/forge_lab.sh builds one; docs/forge.md)")
WHOLE = {"reroll": [{"box": [0, 0, 1, 1], "seed": 4242, "strength": 1.0}]}
LAYOUT = {"layout": [{"phrase": "cat", "box": [0, 0, 0.5, 1]}]}
PROMPT = "a cat and a dog"
HIRES = dict(enable_hr=True, hr_scale=2, hr_upscaler="Latent", denoising_strength=0.6, hr_second_pass_steps=3,
             hr_additional_modules=["Use same choices"])  # Forge's API fails on hires without this field
REPLACE_EXT = "lab-attn2-replace"
REPLACE_SCRIPT = '''
"""Test extension: attn2 replace patches (plain attention) on a clone of the UNet patcher, like IP-Adapter.

Args: [enabled, fail_after]: the patch raises once it ran fail_after times (0: never). It reports in the
infotext how often its patch ran and whether, after the sampling (postprocess_batch) and at the next
generation (process: also after a failed one), its clone is again the sampling patcher and every patcher's
model_options are exactly as it left them (containers and patches by identity)."""
import gradio as gr
import modules.scripts as scripts
from backend.attention import attention_function

BLOCKS = [("input", i) for i in range(12)] + [("middle", 0)] + [("output", i) for i in range(12)]


# Forge Neo's k-diffusion sampler writes the schedule into the sampling patcher's options every generation
# (modules/sd_samplers_kdiffusion.py: transformer_options["sampling_sigmas"] = sigmas), with or without InitEdit
WEBUI_OWN_KEYS = {"sampling_sigmas"}


def shape(o):
    if isinstance(o, dict):
        return ("dict", id(o), {k: shape(v) for k, v in o.items() if k not in WEBUI_OWN_KEYS})
    if isinstance(o, list):
        return ("list", id(o), [shape(v) for v in o])
    return id(o)


class LabAttn2Replace(scripts.Script):
    last = None

    def title(self):
        return "lab attn2 replace"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        return [gr.Checkbox(False, label="lab attn2 replace"), gr.Number(0, label="lab fail after")]

    def intact(self, objects):
        clone, shapes = self.last
        if objects.unet is not clone:
            return "no: the sampling patcher is not the clone"
        changed = [name for name, patcher, before in shapes if shape(patcher.model_options) != before]
        return "no: " + " ".join(changed) + " changed" if changed else "yes"

    def process(self, p, enabled=False, fail_after=0, *args, **kwargs):
        if enabled:
            self.calls = {"n": 0}
        if enabled and self.last is not None:  # what the previous generation (maybe a failed one) left
            p.extra_generation_params["Lab previous intact"] = self.intact(p.sd_model.forge_objects)
            self.last = None

    def process_before_every_sampling(self, p, enabled=False, fail_after=0, *args, **kwargs):
        if not enabled:
            return
        calls = self.calls = getattr(self, "calls", {"n": 0})
        fail_after = int(fail_after or 0)

        def patch(q, k, v, extra_options):
            calls["n"] += 1
            if fail_after and calls["n"] > fail_after:
                raise RuntimeError("lab attn2 replace: failing as asked")
            return attention_function(q, k, v, extra_options["n_heads"])

        model = p.sd_model
        unet = model.forge_objects.unet.clone()
        for block, number in BLOCKS:
            for index in range(2):
                unet.set_model_attn2_replace(patch, block, number, index)
        model.forge_objects.unet = unet
        shared = [("original", model.forge_objects_original.unet), ("lora", model.forge_objects_after_applying_lora.unet)]
        self.last = (unet, [(name, patcher, shape(patcher.model_options)) for name, patcher in shared + [("clone", unet)]])

    def postprocess_batch(self, p, enabled=False, *args, **kwargs):
        if enabled:
            p.extra_generation_params["Lab attn2 replace calls"] = getattr(self, "calls", {"n": 0})["n"]
            p.extra_generation_params["Lab attn2 replace intact"] = self.intact(p.sd_model.forge_objects)
            self.calls = {"n": 0}
'''


class Forge(WebUI):
    started_with_test_extension = False

    def txt2img(self, spec=None, checkpoint=None, replace=None, fail_after=0, **fields):
        fields.setdefault("prompt", PROMPT)
        if replace is not None:
            fields.setdefault("alwayson_scripts", {})["lab attn2 replace"] = {"args": [bool(replace), fail_after]}
        return super().txt2img(spec, checkpoint, **fields)


@pytest.fixture(scope="module")
def forge():
    url = os.environ.get("INITEDIT_FORGE_URL")
    if url:
        yield Forge(url)
        return
    forge_dir = os.environ.get("INITEDIT_FORGE_DIR")
    if not forge_dir:
        pytest.skip(SKIP_REASON)
    proc, url, log = start_forge_family(forge_dir, "INITEDIT_FORGE", scripts={REPLACE_EXT: ("lab_attn2_replace.py",
                                                                                          REPLACE_SCRIPT)})
    try:
        server = Forge(url)
        server.started_with_test_extension = True
        server.log = log
        yield server
    finally:
        stop_server(proc)


@pytest.fixture(scope="module")
def baseline(forge):
    return pixels(forge.txt2img())


def test_it_is_forge_and_initedit_is_listed(forge):
    status, scripts = forge.get("/sdapi/v1/script-info")
    ours = [s for s in scripts if s["name"] == "initedit" and not s["is_img2img"]]
    assert ours and ours[0]["is_alwayson"]
    assert [a["label"] for a in ours[0]["args"]][:2] == ["InitEdit", "InitEdit spec (JSON)"]
    version = infotext(forge.txt2img())
    assert "Version: f" in version or "Version: neo" in version, f"not a Forge 2 / Neo build: {version}"


def test_plain_generation_is_deterministic(forge, baseline):
    assert np.array_equal(pixels(forge.txt2img()), baseline)
    assert not np.array_equal(pixels(forge.txt2img(seed=2)), baseline)


def test_initedit_applies_on_forge(forge):
    """Fails while the controller still asks the A1111 host (which says Forge is not supported)."""
    text = infotext(forge.txt2img(WHOLE))
    assert "not applied" not in text and "InitEdit error" not in text and "InitEdit note" not in text, text
    assert initedit_of(forge.txt2img(WHOLE))["reroll"][0]["seed"] == 4242


def test_disabled_and_empty_change_nothing(forge, baseline):
    assert np.array_equal(pixels(forge.txt2img([False, json.dumps(WHOLE)])), baseline)
    js = forge.txt2img({})
    assert np.array_equal(pixels(js), baseline) and "InitEdit" not in infotext(js)


def test_strength_zero_changes_nothing(forge, baseline):
    js = forge.txt2img({"reroll": [{"box": [0, 0, 1, 1], "seed": 4242, "strength": 0.0}]})
    assert np.array_equal(pixels(js), baseline)


@pytest.mark.parametrize("sampler", ["Euler", "Euler a", "DPM++ 2M", "DDIM", "DPM++ 2M SDE"])
def test_whole_image_reroll_is_the_reroll_seeds_image(forge, sampler):
    """Forge's own modules.rng gives region noise: at strength 1 the image is exactly seed R's."""
    rerolled = pixels(forge.txt2img(WHOLE, sampler_name=sampler))
    plain = pixels(forge.txt2img(seed=4242, sampler_name=sampler))
    assert np.array_equal(rerolled, plain)


def test_partial_box_changes_inside_far_more_than_outside(forge):
    js = forge.txt2img({"reroll": [{"box": [0, 0, 0.5, 0.5], "seed": 7, "strength": 1.0}]}, width=128, height=128)
    diff = np.abs(pixels(js) - pixels(forge.txt2img(width=128, height=128))).sum(-1)
    inside = diff[:64, :64].mean()
    outside = np.concatenate([diff[64:].ravel(), diff[:64, 64:].ravel()]).mean()
    assert inside > 2 * outside, (inside, outside)


@pytest.mark.parametrize("sampler, second_order", [("Euler", False), ("Heun", True)])
def test_keep_counts_the_samplers_steps(forge, sampler, second_order):
    """keep 0.5 keeps half of the steps (both calls of a Heun step); "fraction_of": "calls" half of the model
    calls: the same image on Euler, another on Heun."""
    assert keep_by_steps_and_by_calls(forge, sampler) != second_order


def test_layout_runs_and_is_recorded(forge, baseline):
    js = forge.txt2img(LAYOUT)
    text = infotext(js)
    assert "InitEdit note" not in text and "InitEdit error" not in text, text
    assert initedit_of(js)["layout"] == LAYOUT["layout"]
    assert np.array_equal(pixels(forge.txt2img(LAYOUT)), pixels(js))


def sheet_width(js) -> int:
    from PIL import Image
    return Image.open(io.BytesIO(base64.b64decode(js["images"][-1]))).size[0]


def test_layout_heatmaps_show_the_probe_read_the_attention(forge):
    js = forge.txt2img({**LAYOUT, "heatmaps": True}, width=128, height=128)
    assert len(js["images"]) == 2  # the image and its heatmap sheet: the hooks saw Forge's attn2 calls
    assert sheet_width(js) == 3 * 128  # before / after the edit / the first step after guidance


def test_missing_phrase_is_dropped_and_said(forge):
    js = forge.txt2img({"layout": [{"phrase": "cat", "box": [0, 0, 0.5, 1]}, {"phrase": "zebra", "box": [0.5, 0, 1, 1]}]})
    assert "InitEdit note" in infotext(js) and "zebra" in infotext(js)
    assert [b["phrase"] for b in initedit_of(js)["layout"]] == ["cat"]


@pytest.mark.parametrize("spec,message", [
    ({"reroll": [{"box": [0, 0, 2, 1]}]}, "reroll[0].box"),
    ({"reroll": [{"box": [0, 0, 1, 1]}], "bogus": 1}, "bogus"),
    ({"layout": [{"phrase": "", "box": [0, 0, 1, 1]}]}, "layout[0].phrase"),
])
def test_bad_spec_is_named_and_harmless(forge, baseline, spec, message):
    """Refused before sampling with HTTP 422 naming the field (lib_initedit/webui/api.py), or, where that
    middleware is absent, generated without the edit and named in the infotext."""
    body = {"prompt": PROMPT, "negative_prompt": "", "sampler_name": "Euler", "width": 64, "height": 64, "steps": 4,
            "seed": 1, "cfg_scale": 7, "alwayson_scripts": {"InitEdit": {"args": [spec]}}}
    status, js = forge.request("POST", "/sdapi/v1/txt2img", body)
    if status == 422:
        assert message in json.dumps(js), js
    else:
        assert status == 200, (status, str(js)[:300])
        text = json.loads(js["info"])["infotexts"][0]
        assert "InitEdit error" in text and message in text, text
    assert np.array_equal(pixels(forge.txt2img()), baseline)


def hires(forge) -> dict:
    """HIRES with an upscaler this WebUI has: Forge Neo has no latent upscale modes (its
    /sdapi/v1/latent-upscale-modes is empty) and no Lanczos / Nearest; its "None" upscaler resizes the decoded
    first pass (the other, ESRGAN, would download a model)."""
    status, modes = forge.get("/sdapi/v1/latent-upscale-modes")
    names = [m["name"] for m in modes] if status == 200 else []
    return HIRES if "Latent" in names else {**HIRES, "hr_upscaler": "None"}


def test_hires_first_pass_only_unless_asked(forge):
    size = hires(forge)
    first_only = pixels(forge.txt2img(WHOLE, **size))
    both = pixels(forge.txt2img({**WHOLE, "hires": True}, **size))
    plain_r = pixels(forge.txt2img(seed=4242, **size))
    assert np.array_equal(both, plain_r)
    assert not np.array_equal(first_only, plain_r)


def test_layout_probe_through_an_attn2_replace_patch(forge):
    """With attn2 replace patches registered (IP-Adapter style), attn2.forward never runs during sampling; the
    probe leaves them out of its own call, so the layout and heatmaps still work and match the unpatched run
    (guidance off: see the next test)."""
    if not forge.started_with_test_extension:
        pytest.skip("needs the test extension that INITEDIT_FORGE_DIR mode installs")
    plain = forge.txt2img(replace=True)
    assert int(infotext(plain).split("Lab attn2 replace calls: ")[1].split(",")[0]) > 0  # the patch ran
    assert np.array_equal(pixels(plain), pixels(forge.txt2img(replace=False)))  # and is plain attention
    spec = {**LAYOUT, "heatmaps": True, "guidance": 0}
    patched = forge.txt2img(spec, replace=True, width=128, height=128)
    assert len(patched["images"]) == 2 and "InitEdit note" not in infotext(patched), infotext(patched)
    unpatched = forge.txt2img(spec, replace=False, width=128, height=128)
    assert np.array_equal(pixels(patched), pixels(unpatched))
    with open(forge.log) as f:  # the probe ran on the patched clone and said what it left out
        assert "leaves out attn2 replace patches" in f.read()


def replace_calls(js):
    return int(infotext(js).split("Lab attn2 replace calls: ")[1].split(",")[0])


def test_layout_guidance_through_an_attn2_replace_patch(forge):
    """Forge's BasicTransformerBlock calls a registered attn2 replace patch instead of attn2.forward (which the
    guidance wraps): the host guides those blocks through the patch API on a clone of the sampling patcher.
    The test patch is plain attention, so guidance through it gives exactly the image guidance gives without it."""
    if not forge.started_with_test_extension:
        pytest.skip("needs the test extension that INITEDIT_FORGE_DIR mode installs")
    spec = {**LAYOUT, "guidance": 8, "guidance_steps": 1.0}
    size = dict(width=128, height=128)
    guided = forge.txt2img(spec, replace=True, **size)
    off = forge.txt2img({**spec, "guidance": 0}, replace=True, **size)
    assert not np.array_equal(pixels(guided), pixels(off))  # guidance acts under the replace patches
    assert np.array_equal(pixels(forge.txt2img(spec, replace=True, **size)), pixels(guided))  # deterministic
    assert np.array_equal(pixels(forge.txt2img(spec, replace=False, **size)), pixels(guided))  # = the forward path
    for js in (guided, off):
        assert replace_calls(js) > 0  # the patches' own function still ran
        assert "Lab attn2 replace intact: yes" in infotext(js), infotext(js)  # clone back, every options as before
    with open(forge.log) as f:
        assert "layout guidance also acts through the attn2 replace patches" in f.read()
    # the heatmaps' third column is recorded through the replaced blocks too
    sheet = forge.txt2img({**spec, "guidance_steps": 0.5, "heatmaps": True}, replace=True, **size)
    assert sheet_width(sheet) == 3 * 128


def test_after_an_error_under_guided_replace_patches_everything_is_as_before(forge):
    if not forge.started_with_test_extension:
        pytest.skip("needs the test extension that INITEDIT_FORGE_DIR mode installs")
    spec = {**LAYOUT, "guidance": 8, "guidance_steps": 1.0}
    size = dict(width=128, height=128)
    body = {"prompt": PROMPT, "negative_prompt": "", "sampler_name": "Euler", "width": 128, "height": 128,
            "steps": 4, "seed": 1, "cfg_scale": 7, "batch_size": 1, "n_iter": 1, "send_images": True,
            "save_images": False, "alwayson_scripts": {"InitEdit": {"args": [spec]},
                                                       "lab attn2 replace": {"args": [True, 12]}}}
    status, js = forge.request("POST", "/sdapi/v1/txt2img", body)  # the patch raises in the 1st/2nd step
    assert status != 200 or "failing as asked" in json.dumps(js), (status, js)
    after = forge.txt2img(spec, replace=True, **size)
    assert "Lab previous intact: yes" in infotext(after), infotext(after)
    assert "Lab attn2 replace intact: yes" in infotext(after), infotext(after)
    assert np.array_equal(pixels(after), pixels(forge.txt2img(spec, replace=False, **size)))


def test_sdxl(forge, baseline):
    status, models = forge.get("/sdapi/v1/sd-models")
    sdxl = next((m["title"] for m in models if "sdxl" in m["model_name"]), None)
    if sdxl is None:
        pytest.skip("no tiny-forge-sdxl checkpoint (tests/tooling/forge_lab.sh builds it unless SKIP_SDXL=1)")
    plain = forge.txt2img(checkpoint=sdxl)
    assert np.array_equal(pixels(forge.txt2img(checkpoint=sdxl)), pixels(plain))
    assert np.array_equal(pixels(forge.txt2img(WHOLE, checkpoint=sdxl)), pixels(forge.txt2img(checkpoint=sdxl, seed=4242)))
    js = forge.txt2img({**LAYOUT, "heatmaps": True}, checkpoint=sdxl, width=128, height=128)
    assert len(js["images"]) == 2 and "InitEdit note" not in infotext(js), infotext(js)
    assert initedit_of(js)["layout"] == LAYOUT["layout"]


def test_a_plain_generation_is_unchanged_after_initedit_ran(forge):
    check_nothing_left_behind(forge)
