"""InitEdit in the ``ldm_patched`` Forge line (reForge, Forge Classic), through its API.

Either ``INITEDIT_REFORGE_URL``: a running reForge / Classic with InitEdit installed (e.g.
``tests/tooling/reforge_lab.sh link && tests/tooling/reforge_lab.sh run 7890``), or ``INITEDIT_REFORGE_DIR``:
an installed one (the lab's ``$REFORGE_LAB/webui``), with ``INITEDIT_REFORGE_PYTHON`` (default
DIR/../venv/bin/python) and ``INITEDIT_REFORGE_MODELS`` (default DIR/../models, holding
``Stable-diffusion/tiny-forge-sd15.safetensors``); then a server is started on a free loopback port with a
temporary data dir linking this checkout, plus a small test extension that can register attn2 *replace*
patches on a clone of the UNet patcher (as IP-Adapter does), make the probe's UNet call fail, and reports
the hooks and patcher options it sees. Without either: skipped. Images are compared as decoded pixels.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.webui.forge_family import keep_by_steps_and_by_calls, start_forge_family
from tests.webui.helpers import (PROBE_LAYOUT, WebUI, capture_extension, check_nothing_left_behind, infotext, initedit_of,
                                 pixels, read_capture, stop_server)

pytestmark = pytest.mark.lab  # needs the reForge / Forge Classic lab (tests/tooling/reforge_lab.sh)

SKIP_REASON = ("no reForge / Forge Classic given: set INITEDIT_REFORGE_URL to a running one with InitEdit installed, "
               "or INITEDIT_REFORGE_DIR to an installed one (tests/tooling/reforge_lab.sh builds it; docs/reforge.md)")
WHOLE = {"reroll": [{"box": [0, 0, 1, 1], "seed": 4242, "strength": 1.0}]}
LAYOUT = {"layout": [{"phrase": "cat", "box": [0, 0, 0.5, 1]}]}
PROMPT = "a cat and a dog"
HIRES = dict(enable_hr=True, hr_scale=2, hr_upscaler="Latent", denoising_strength=0.6, hr_second_pass_steps=3)
LAB_EXT = "lab-ldm-patched"
LAB_SCRIPT = '''
"""Test extension for the ldm_patched line. Args: [mode, n].

mode "interrupt_probe": an attn2_patch that asks for an interrupt on its first call (inside the probe).
mode "replace": attn2 replace patches (plain attention) on a clone of the UNet patcher, like IP-Adapter; the
patch raises once it ran n times (0: never). mode "fail_probe": an attn2_patch on a clone that raises on its
first n calls (the probe's UNet call comes first: InitEdit's process_before_every_sampling runs after this
one's), then passes. With any mode it reports in the infotext how often its replace patch ran, and, after the
sampling (postprocess_batch) and at the next generation (process: also after a failed one), whether the UNet
has hooks or instance forwards it did not have, and whether every patcher's model_options are exactly as it
left them (containers and patches by identity)."""
import gradio as gr
import modules.scripts as scripts
from modules import shared as webui_shared
from ldm_patched.ldm.modules.attention import optimized_attention

BLOCKS = [("input", i) for i in range(12)] + [("middle", 0)] + [("output", i) for i in range(12)]


def shape(o):
    if isinstance(o, dict):
        return ("dict", id(o), {k: shape(v) for k, v in o.items()})
    if isinstance(o, list):
        return ("list", id(o), [shape(v) for v in o])
    return id(o)


def hooks(unet):
    n = 0
    for m in unet.modules():
        n += len(m._forward_hooks) + len(m._forward_pre_hooks) + ("forward" in vars(m))
    return n


class LabLdmPatched(scripts.Script):
    last = None

    def title(self):
        return "lab ldm_patched"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        return [gr.Textbox("", label="lab mode"), gr.Number(0, label="lab n")]

    def intact(self, p):
        objects = p.sd_model.forge_objects
        clone, shapes, hooks_before = self.last
        said = []
        if clone is not None and objects.unet is not clone:
            said.append("the sampling patcher is not the clone")
        said += [name + " changed" for name, patcher, before in shapes if shape(patcher.model_options) != before]
        left = hooks(objects.unet.model.diffusion_model) - hooks_before
        if left:
            said.append(f"{left} hooks left")
        return "no: " + "; ".join(said) if said else "yes"

    def process(self, p, mode="", n=0, *args, **kwargs):
        if mode:
            self.calls = {"n": 0}
        if mode and self.last is not None:  # what the previous generation (maybe a failed one) left
            p.extra_generation_params["Lab previous intact"] = self.intact(p)
            self.last = None

    def process_before_every_sampling(self, p, mode="", n=0, *args, **kwargs):
        if not mode or getattr(p, "is_hr_pass", False):
            return
        calls = self.calls = getattr(self, "calls", {"n": 0})
        n = int(n or 0)
        model = p.sd_model
        unet = model.forge_objects.unet.clone()
        if mode == "replace":
            def patch(q, k, v, extra_options):
                calls["n"] += 1
                if n and calls["n"] > n:
                    raise RuntimeError("lab ldm_patched: failing as asked")
                return optimized_attention(q, k, v, extra_options["n_heads"])

            for block, number in BLOCKS:
                for index in range(2):
                    unet.set_model_attn2_replace(patch, block, number, index)
        elif mode == "interrupt_probe":
            def patch(h, context, value, extra_options):
                calls["n"] += 1
                if calls["n"] == 1:  # inside the probe's UNet call: as if the user pressed Interrupt there
                    webui_shared.state.interrupt()
                return h, context, value

            unet.set_model_attn2_patch(patch)
        elif mode == "fail_probe":
            def patch(h, context, value, extra_options):
                calls["n"] += 1
                if calls["n"] <= n:
                    raise RuntimeError("lab ldm_patched: failing the first UNet call as asked")
                return h, context, value

            unet.set_model_attn2_patch(patch)
        model.forge_objects.unet = unet
        shared = [("original", model.forge_objects_original.unet), ("lora", model.forge_objects_after_applying_lora.unet)]
        self.last = (unet, [(name, patcher, shape(patcher.model_options)) for name, patcher in shared + [("clone", unet)]],
                     hooks(unet.model.diffusion_model))

    def postprocess_batch(self, p, mode="", *args, **kwargs):
        if mode:
            p.extra_generation_params["Lab patch calls"] = getattr(self, "calls", {"n": 0})["n"]
            if self.last is not None:
                p.extra_generation_params["Lab intact"] = self.intact(p)
            self.calls = {"n": 0}
'''


class ReForge(WebUI):
    started_with_test_extension = False
    log = None
    capture = None

    def txt2img(self, spec=None, checkpoint=None, lab=None, n=0, **fields):
        fields.setdefault("prompt", PROMPT)
        if lab is not None:
            fields.setdefault("alwayson_scripts", {})["lab ldm_patched"] = {"args": [lab, n]}
        return super().txt2img(spec, checkpoint, **fields)

    def log_text(self) -> str:
        with open(self.log) as f:
            return f.read()


def lab_value(js, key):
    text = infotext(js)
    return text.split(f"{key}: ")[1].split(",")[0].strip('"') if f"{key}: " in text else None


@pytest.fixture(scope="module")
def reforge():
    url = os.environ.get("INITEDIT_REFORGE_URL")
    if url:
        yield ReForge(url)
        return
    webui_dir = os.environ.get("INITEDIT_REFORGE_DIR")
    if not webui_dir:
        pytest.skip(SKIP_REASON)
    capture = capture_extension()  # records the UNet's inputs (x, t, context) of each generation
    proc, url, log = start_forge_family(webui_dir, "INITEDIT_REFORGE", scripts={LAB_EXT: ("lab_ldm_patched.py", LAB_SCRIPT)},
                                        links={"initedit-test-capture": capture})
    try:
        server = ReForge(url)
        server.started_with_test_extension = True
        server.log, server.capture = log, capture
        yield server
    finally:
        stop_server(proc)


@pytest.fixture(scope="module")
def baseline(reforge):
    return pixels(reforge.txt2img())


NEEDS_NO_EDIT = ("test_it_is_the_ldm_patched_line", "test_plain_generation", "test_initedit_applies",
                 "test_disabled_and_empty", "test_bad_spec", "test_a_plain_generation_is_unchanged")


@pytest.fixture(scope="module")
def not_applied(reforge):
    """Why InitEdit says "not applied" on this WebUI (e.g. Forge Classic before the controller's JSON-safe
    infotext value), or None."""
    text = infotext(reforge.txt2img(WHOLE))
    if 'InitEdit: "' in text:
        return None
    said = [line for line in (reforge.log_text() if reforge.log else "").splitlines() if "not applied: " in line]
    return said[-1].split("not applied: ", 1)[1] if said else "no InitEdit key in the infotext"


@pytest.fixture(autouse=True)
def _skip_where_not_applied(request):
    if request.node.name.startswith(NEEDS_NO_EDIT) or "reforge" not in request.fixturenames:
        return
    reason = request.getfixturevalue("not_applied")
    if reason:  # test_initedit_applies fails with the reason; the rest would only repeat it
        pytest.skip(f"InitEdit is not applied on this WebUI: {reason}")


def needs_lab(reforge):
    if not reforge.started_with_test_extension:
        pytest.skip("needs the test extension that INITEDIT_REFORGE_DIR mode installs")


def test_it_is_the_ldm_patched_line_and_initedit_is_listed(reforge):
    status, scripts = reforge.get("/sdapi/v1/script-info")
    ours = [s for s in scripts if s["name"] == "initedit" and not s["is_img2img"]]
    assert ours and ours[0]["is_alwayson"]
    assert [a["label"] for a in ours[0]["args"]][:2] == ["InitEdit", "InitEdit spec (JSON)"]
    version = infotext(reforge.txt2img())
    assert "Version: " in version, version
    if reforge.log:
        assert "Device: cpu" in reforge.log_text() or "CPU" in reforge.log_text()


def test_plain_generation_is_deterministic(reforge, baseline):
    assert np.array_equal(pixels(reforge.txt2img()), baseline)
    assert not np.array_equal(pixels(reforge.txt2img(seed=2)), baseline)


def test_initedit_applies(reforge):
    """select_host() gives LdmPatchedHost here (A1111's host would say the patcher is unknown and edit nothing)."""
    js = reforge.txt2img(WHOLE)
    text = infotext(js)
    assert "not applied" not in text and "InitEdit error" not in text and "InitEdit note" not in text, text
    if reforge.log:
        assert "not applied" not in reforge.log_text(), [l for l in reforge.log_text().splitlines() if "not applied" in l]
    assert initedit_of(js)["reroll"][0]["seed"] == 4242


def test_disabled_and_empty_change_nothing(reforge, baseline):
    assert np.array_equal(pixels(reforge.txt2img([False, json.dumps(WHOLE)])), baseline)
    js = reforge.txt2img({})
    assert np.array_equal(pixels(js), baseline) and "InitEdit" not in infotext(js)


def test_strength_zero_changes_nothing(reforge, baseline):
    js = reforge.txt2img({"reroll": [{"box": [0, 0, 1, 1], "seed": 4242, "strength": 0.0}]})
    assert np.array_equal(pixels(js), baseline)


@pytest.mark.parametrize("sampler, second_order", [("Euler", False), ("Heun", True)])
def test_keep_counts_the_samplers_steps(reforge, sampler, second_order):
    """keep 0.5 keeps half of the steps (both calls of a Heun step); "fraction_of": "calls" half of the model
    calls: the same image on Euler, another on Heun."""
    assert keep_by_steps_and_by_calls(reforge, sampler) != second_order


@pytest.mark.parametrize("sampler", ["Euler", "Euler a", "DPM++ 2M", "DDIM", "DPM++ 2M SDE", "DPM++ SDE", "DPM2 a"])
def test_whole_image_reroll_is_the_reroll_seeds_image(reforge, sampler):
    """The host's own modules.rng gives region noise; ancestral steps and the SDE samplers' Brownian noise
    follow the reroll seed: at strength 1 the image is exactly seed R's."""
    rerolled = pixels(reforge.txt2img(WHOLE, sampler_name=sampler))
    plain = pixels(reforge.txt2img(seed=4242, sampler_name=sampler))
    assert np.array_equal(rerolled, plain)


def test_partial_box_changes_inside_far_more_than_outside(reforge):
    js = reforge.txt2img({"reroll": [{"box": [0, 0, 0.5, 0.5], "seed": 7, "strength": 1.0}]},
                         width=128, height=128)
    diff = np.abs(pixels(js) - pixels(reforge.txt2img(width=128, height=128))).sum(-1)
    inside = diff[:64, :64].mean()
    outside = np.concatenate([diff[64:].ravel(), diff[:64, 64:].ravel()]).mean()
    assert inside > 2 * outside, (inside, outside)


def test_layout_runs_and_is_recorded(reforge, baseline):
    js = reforge.txt2img(LAYOUT)
    text = infotext(js)
    assert "InitEdit note" not in text and "InitEdit error" not in text, text
    assert initedit_of(js)["layout"] == LAYOUT["layout"]
    assert np.array_equal(pixels(reforge.txt2img(LAYOUT)), pixels(js))


def test_layout_heatmaps_show_the_probe_read_the_attention(reforge):
    js = reforge.txt2img({**LAYOUT, "heatmaps": True}, width=128, height=128)
    assert len(js["images"]) == 2, infotext(js)  # the image and its heatmap sheet: the hooks saw the attn2 calls
    if reforge.log:
        assert "attention inside its box 'cat'" in reforge.log_text()


@pytest.mark.parametrize("sampler,settings", [
    ("Euler", {}), ("Euler a", {}), ("DPM++ 2M", {}), ("DDIM", {}), ("PLMS", {}), ("UniPC", {}),
    ("Euler", {"sgm_noise_multiplier": True}),
])
def test_probe_input_is_the_samplers_first_unet_input(reforge, sampler, settings):
    """With heatmaps on, the layout's second probe runs on the edited noise the sampler then starts from: its
    UNet input (x, t, context) must be the conditional row of the sampler's first UNet call (ldm_patched batches
    cond and uncond in either order: the row whose context matches)."""
    needs_lab(reforge)
    # set through /options and put back: override_settings_restore_afterwards restores only options already in
    # the config's data (modules/processing.py ~L902, as in A1111), so a fresh data dir kept SGM on afterwards
    _, before = reforge.get("/sdapi/v1/options")
    reforge.request("POST", "/sdapi/v1/options", settings) if settings else None
    try:
        js = reforge.txt2img(PROBE_LAYOUT, prompt="a cat and a red car", sampler_name=sampler)
    finally:
        if settings:
            reforge.request("POST", "/sdapi/v1/options", {k: before.get(k) for k in settings})
    text = infotext(js)
    assert "InitEdit note" not in text and "InitEdit error" not in text, text
    calls, meta = read_capture(reforge.capture)
    assert len(calls) >= 3, (len(calls), meta)
    before, after, first = calls[0], calls[1], calls[2]
    # two rows (cond and uncond), or one on Forge Classic: its CFGDenoiser skips the uncond at step 0 even with
    # "Ignore negative prompt during early steps" at 0 (`0.0 <= step / total <= opts.skip_early_cond`)
    assert before["x"].shape[0] == after["x"].shape[0] == 1 and first["x"].shape[0] in (1, 2), [c["x"].shape for c in calls]
    np.testing.assert_array_equal(np.sort(before["x"].ravel()), np.sort(after["x"].ravel()))
    row = min(range(first["c"].shape[0]), key=lambda i: float(np.abs(first["c"][i] - after["c"][0]).max()))
    np.testing.assert_allclose(after["c"][0], first["c"][row], rtol=1e-5, atol=1e-5)
    ratio = float(np.abs(first["x"][row]).mean() / max(float(np.abs(after["x"]).mean()), 1e-12))
    np.testing.assert_allclose(after["x"][0], first["x"][row], rtol=1e-4, atol=1e-4,
                               err_msg=f"probe input != sampler's first UNet input (magnitude ratio {ratio:.6f})")
    np.testing.assert_allclose(after["t"], first["t"][row:row + 1], rtol=1e-5, atol=1e-3)


def test_missing_phrase_is_dropped_and_said(reforge):
    js = reforge.txt2img({"layout": [{"phrase": "cat", "box": [0, 0, 0.5, 1]}, {"phrase": "zebra", "box": [0.5, 0, 1, 1]}]})
    assert "InitEdit note" in infotext(js) and "zebra" in infotext(js)
    assert [b["phrase"] for b in initedit_of(js)["layout"]] == ["cat"]


@pytest.mark.parametrize("spec,message", [
    ({"reroll": [{"box": [0, 0, 2, 1]}]}, "reroll[0].box"),
    ({"reroll": [{"box": [0, 0, 1, 1]}], "bogus": 1}, "bogus"),
    ({"layout": [{"phrase": "", "box": [0, 0, 1, 1]}]}, "layout[0].phrase"),
])
def test_bad_spec_is_refused_with_422_naming_the_field(reforge, baseline, spec, message):
    body = {"prompt": PROMPT, "negative_prompt": "", "sampler_name": "Euler", "width": 64, "height": 64, "steps": 4,
            "seed": 1, "cfg_scale": 7, "alwayson_scripts": {"InitEdit": {"args": [spec]}}}
    status, js = reforge.request("POST", "/sdapi/v1/txt2img", body)
    assert status == 422, (status, str(js)[:300])
    assert message in json.dumps(js), js
    assert np.array_equal(pixels(reforge.txt2img()), baseline)


def test_hires_first_pass_only_unless_asked(reforge):
    first_only = pixels(reforge.txt2img(WHOLE, **HIRES))
    both = pixels(reforge.txt2img({**WHOLE, "hires": True}, **HIRES))
    plain_r = pixels(reforge.txt2img(seed=4242, **HIRES))
    assert both.shape == (128, 128, 3)
    assert np.array_equal(both, plain_r)
    assert not np.array_equal(first_only, plain_r)


def test_hooks_and_patches_are_gone_after_a_layout_run(reforge):
    """After a layout run with heatmaps and guidance (probe hooks, guidance wrappers), the UNet has no hook or
    instance forward it did not have and no patcher's options changed; the same at the next generation."""
    needs_lab(reforge)
    js = reforge.txt2img({**LAYOUT, "heatmaps": True, "guidance": 4}, lab="observe", width=128, height=128)
    assert lab_value(js, "Lab intact") == "yes", infotext(js)
    after = reforge.txt2img(lab="observe")
    assert lab_value(after, "Lab previous intact") == "yes", infotext(after)


def test_hooks_are_gone_after_the_probe_fails(reforge, baseline):
    """The probe's UNet call raises (an attn2_patch failing on its first call): the generation goes on
    without the edit, says so, and leaves no hook behind."""
    needs_lab(reforge)
    js = reforge.txt2img({**LAYOUT, "heatmaps": True}, lab="fail_probe", n=1, width=128, height=128)
    assert lab_value(js, "Lab intact") == "yes", infotext(js)
    assert "failing the first UNet call as asked" in (reforge.log_text() if reforge.log else "failing the first UNet call as asked")
    after = reforge.txt2img(lab="observe")
    assert lab_value(after, "Lab previous intact") == "yes", infotext(after)
    assert np.array_equal(pixels(reforge.txt2img()), baseline)


def test_hooks_are_gone_after_an_interrupt_during_the_probe(reforge, baseline):
    needs_lab(reforge)
    status, js = reforge.request("POST", "/sdapi/v1/txt2img", {
        "prompt": PROMPT, "negative_prompt": "", "sampler_name": "Euler", "width": 128, "height": 128, "steps": 4,
        "seed": 1, "cfg_scale": 7, "send_images": True, "save_images": False,
        "alwayson_scripts": {"InitEdit": {"args": [{**LAYOUT, "heatmaps": True, "guidance": 4}]},
                             "lab ldm_patched": {"args": ["interrupt_probe", 0]}}})
    assert status in (200, 500), (status, str(js)[:300])
    after = reforge.txt2img(lab="observe")
    assert lab_value(after, "Lab previous intact") == "yes", infotext(after)
    assert np.array_equal(pixels(reforge.txt2img()), baseline)


def test_layout_probe_through_an_attn2_replace_patch(reforge):
    """With attn2 replace patches registered (IP-Adapter style), attn2.forward never runs during sampling; the
    probe leaves them out of its own call (on a clone), so layout and heatmaps still work and, with guidance
    off, match the unpatched run."""
    needs_lab(reforge)
    plain = reforge.txt2img(lab="replace")
    assert int(lab_value(plain, "Lab patch calls")) > 0  # the patch ran
    assert np.array_equal(pixels(plain), pixels(reforge.txt2img()))  # and is plain attention
    spec = {**LAYOUT, "heatmaps": True, "guidance": 0}
    patched = reforge.txt2img(spec, lab="replace", width=128, height=128)
    assert len(patched["images"]) == 2 and "InitEdit note" not in infotext(patched), infotext(patched)
    assert lab_value(patched, "Lab intact") == "yes", infotext(patched)
    unpatched = reforge.txt2img(spec, width=128, height=128)
    assert np.array_equal(pixels(patched), pixels(unpatched))
    assert "leaves out attn2 replace patches" in reforge.log_text()


def test_layout_guidance_changes_the_image(reforge):
    spec = {**LAYOUT, "guidance": 8, "guidance_steps": 1.0}
    guided = reforge.txt2img(spec, width=128, height=128)
    assert not np.array_equal(pixels(guided), pixels(reforge.txt2img({**spec, "guidance": 0}, width=128, height=128)))
    assert np.array_equal(pixels(reforge.txt2img(spec, width=128, height=128)), pixels(guided))


def test_layout_guidance_through_an_attn2_replace_patch(reforge):
    """ldm_patched's BasicTransformerBlock calls a registered attn2 replace patch instead of attn2.forward (which
    the guidance wraps): the host guides those blocks through the patch API on a clone of the sampling patcher.
    The test patch is plain attention, so guidance through it gives exactly the image guidance gives without it."""
    needs_lab(reforge)
    spec = {**LAYOUT, "guidance": 8, "guidance_steps": 1.0}
    size = dict(width=128, height=128)
    guided = reforge.txt2img(spec, lab="replace", **size)
    off = reforge.txt2img({**spec, "guidance": 0}, lab="replace", **size)
    assert not np.array_equal(pixels(guided), pixels(off))  # guidance acts under the replace patches
    assert np.array_equal(pixels(reforge.txt2img(spec, lab="replace", **size)), pixels(guided))  # deterministic
    assert np.array_equal(pixels(reforge.txt2img(spec, **size)), pixels(guided))  # = the forward path's image
    for js in (guided, off):
        assert int(lab_value(js, "Lab patch calls")) > 0  # the patches' own function still ran
        assert lab_value(js, "Lab intact") == "yes", infotext(js)  # clone back, every options as before
    assert "layout guidance also acts through the attn2 replace patches" in reforge.log_text()


def test_after_an_error_in_sampling_everything_is_as_before(reforge):
    """The replace patch raises during sampling (after the probe): the next generation finds the UNet without
    hooks and every patcher's options as they were."""
    needs_lab(reforge)
    body = {"prompt": PROMPT, "negative_prompt": "", "sampler_name": "Euler", "width": 128, "height": 128,
            "steps": 4, "seed": 1, "cfg_scale": 7, "batch_size": 1, "n_iter": 1, "send_images": True,
            "save_images": False, "alwayson_scripts": {"InitEdit": {"args": [{**LAYOUT, "guidance": 4}]},
                                                       "lab ldm_patched": {"args": ["replace", 12]}}}
    status, js = reforge.request("POST", "/sdapi/v1/txt2img", body)
    assert status != 200 or "failing as asked" in json.dumps(js), (status, str(js)[:300])
    after = reforge.txt2img({**LAYOUT, "guidance": 4}, lab="observe", width=128, height=128)
    assert lab_value(after, "Lab previous intact") == "yes", infotext(after)
    assert lab_value(after, "Lab intact") == "yes", infotext(after)


def test_sdxl(reforge):
    status, models = reforge.get("/sdapi/v1/sd-models")
    sdxl = next((m["title"] for m in models if "sdxl" in m["model_name"]), None)
    if sdxl is None:
        pytest.skip("no tiny-forge-sdxl checkpoint (tests/tooling/reforge_lab.sh links it unless SKIP_SDXL=1)")
    plain = reforge.txt2img(checkpoint=sdxl)
    assert np.array_equal(pixels(reforge.txt2img(checkpoint=sdxl)), pixels(plain))
    assert np.array_equal(pixels(reforge.txt2img(WHOLE, checkpoint=sdxl)), pixels(reforge.txt2img(checkpoint=sdxl, seed=4242)))
    js = reforge.txt2img({**LAYOUT, "heatmaps": True}, checkpoint=sdxl, width=128, height=128)
    assert len(js["images"]) == 2 and "InitEdit note" not in infotext(js), infotext(js)
    assert initedit_of(js)["layout"] == LAYOUT["layout"]


def test_a_plain_generation_is_unchanged_after_initedit_ran(reforge):
    check_nothing_left_behind(reforge)
