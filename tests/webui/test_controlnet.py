"""InitEdit together with the real sd-webui-controlnet (Mikubill, v1.1.455) in a real WebUI.

Needs a WebUI (fixture ``webui`` of conftest.py: ``INITEDIT_WEBUI_URL`` or ``INITEDIT_WEBUI_DIR``) that has
InitEdit, sd-webui-controlnet and the tiny ControlNet ``control_tiny_sd15`` built for the lab's tiny-sd15
checkpoint. When the conftest starts its own server (``INITEDIT_WEBUI_DIR``), this module starts one of its
own instead, with ControlNet linked in from ``INITEDIT_CONTROLNET_DIR`` (default:
$LAB/data/extensions/sd-webui-controlnet). Everything missing is a skip with the reason. Set-up, numbers
and what InitEdit does for ControlNet: docs/controlnet.md. Tooling: tests/tooling/make_tiny_controlnet.py (the model) and
tests/tooling/lab_ext_cn_tiny_config (lets CN 1.1.455 build a ControlNet with 32 instead of 320 channels).

All requests: 64x64, Euler (no per-step noise), few steps, prompt "a cat and a red car".
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tempfile

import pytest

from tests.tooling.cn_api_smoke import cn_unit, control_image
from tests.webui.helpers import WebUI, start_server, stop_server

pytestmark = pytest.mark.lab  # needs the ControlNet extension and the tiny ControlNet (tests/tooling)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAB = os.environ.get("LAB") or os.path.join(os.path.expanduser("~"), "webui-lab")
CN_MODEL_STEM = "control_tiny_sd15"
ADAPTER_STEM = "t2iadapter_tiny_sd15"  # make_tiny_controlnet.py --kind t2i-adapter
CN_VERSION = "v1.1.455"
SEED, SEED_R = 1234, 4321
PROMPT = "a cat and a red car"

# sha256 (first 16 hex) of the RGB pixels, recorded on the lab WebUI with ControlNet v1.1.455 installed and
# InitEdit NOT installed (tiny-sd15 [05c06100cb], control_tiny_sd15 [17eb3406], CPU torch 2.13).  They are
# compared only where "plain" (no ControlNet, no InitEdit) also matches, i.e. the same numerics.
GOLDEN = {
    "plain": ["569df94897433609"],
    "cn_none": ["c387f70343d167e6"],
    "cn_canny": ["185dbd5b0bb2e4d4"],
    "cn_canny_seed4321": ["ba23235bde0fbd31"],
    "batch2_canny_ref": ["ca78200d7e9c9d90", "4d6ea00a5aecb956"],
}
LAYOUT = {"layout": [{"phrase": "cat", "box": [0, 0, 0.5, 1]}]}
LAYOUT_HEATMAPS = {**LAYOUT, "heatmaps": True}


# ----------------------------------------------------------------------------- server with ControlNet
def _cn_dir() -> str:
    return os.environ.get("INITEDIT_CONTROLNET_DIR") or os.path.join(LAB, "data", "extensions", "sd-webui-controlnet")


def _start_with_controlnet(webui_dir: str):
    """Like conftest's server, plus ControlNet and the lab's tiny-config shim as extensions."""
    cn = _cn_dir()
    if not os.path.isfile(os.path.join(cn, "scripts", "controlnet.py")):
        pytest.skip(f"sd-webui-controlnet not found at {cn} (set INITEDIT_CONTROLNET_DIR; docs/controlnet.md)")
    extensions = {"sd-webui-controlnet": cn,
                  "zz-lab-cn-tiny-config": os.path.join(ROOT, "tests", "tooling", "lab_ext_cn_tiny_config"),
                  "zz-initedit-test-probe": os.path.join(ROOT, "tests", "tooling", "lab_ext_test_probe")}
    os.environ.setdefault("INITEDIT_LATENT_DIR", tempfile.mkdtemp(prefix="initedit-cn-latents-"))
    proc, url, _ = start_server(webui_dir, extensions, ready_path="/controlnet/version")  # CN's routes come later
    return proc, url


@pytest.fixture(scope="module")
def cnui(request):
    """(WebUI, ControlNet model title) of a server with InitEdit + ControlNet + the tiny ControlNet."""
    proc = None
    if os.environ.get("INITEDIT_WEBUI_URL"):
        ui = request.getfixturevalue("webui")
    elif os.environ.get("INITEDIT_WEBUI_DIR"):
        proc, url = _start_with_controlnet(os.environ["INITEDIT_WEBUI_DIR"])
        ui = WebUI(url)
    else:
        pytest.skip("no WebUI given: set INITEDIT_WEBUI_URL to a running WebUI with InitEdit and "
                    "sd-webui-controlnet, or INITEDIT_WEBUI_DIR (docs/controlnet.md)")
    try:
        status, _ = ui.get("/controlnet/version")
        if status != 200:
            pytest.skip(f"sd-webui-controlnet is not installed in the WebUI at {ui.url} (docs/controlnet.md)")
        _, scripts = ui.get("/sdapi/v1/script-info")
        if not any(s["name"] == "initedit" for s in scripts):
            pytest.skip(f"InitEdit is not installed in the WebUI at {ui.url}")
        _, models = ui.get("/controlnet/model_list")
        titles = [m for m in models["model_list"] if m.split(" [")[0] == CN_MODEL_STEM]
        if not titles:
            pytest.skip(f"no ControlNet model {CN_MODEL_STEM!r}: run tests/tooling/make_tiny_controlnet.py "
                        f"(lab venv) and restart the WebUI")
        _, sd = ui.get("/sdapi/v1/sd-models")
        if not any(m["model_name"] == "tiny-sd15" for m in sd):
            pytest.skip("the lab's tiny-sd15 checkpoint is not available")
        yield ui, titles[0]
    finally:
        if proc is not None:
            stop_server(proc)


# ----------------------------------------------------------------------------- helpers
IMG = control_image(64)


def canny(model, **kw):
    return cn_unit(model, IMG, "canny", **kw)


def reference(weight=1.0):
    return cn_unit("None", IMG, "reference_only", threshold_a=0.5, weight=weight)


def body(units=None, spec=None, seed=SEED, steps=4, batch_size=1, **extra):
    b = {"prompt": PROMPT, "negative_prompt": "", "seed": seed, "steps": steps, "width": 64, "height": 64,
         "cfg_scale": 7, "sampler_name": "Euler", "batch_size": batch_size, "n_iter": 1, "send_images": True,
         "save_images": False, "override_settings": {"sd_model_checkpoint": "tiny-sd15"},
         "override_settings_restore_afterwards": True, "alwayson_scripts": {}}
    if units is not None:
        b["alwayson_scripts"]["controlnet"] = {"args": units}
    if spec is not None:
        b["alwayson_scripts"]["InitEdit"] = {"args": spec if isinstance(spec, list) else [spec]}
    b.update(extra)
    return b


def post(ui, b):
    """(HTTP status, response with info decoded)."""
    status, js = ui.request("POST", "/sdapi/v1/txt2img", b)
    if status == 200:
        js["info"] = json.loads(js["info"])
    return status, js


_MEMO: dict = {}


def run(ui, fresh=False, **kw):
    """A 200 response; identical requests are answered from a per-server memo unless ``fresh``."""
    b = body(**kw)
    key = (ui.url, json.dumps(b, sort_keys=True))
    if fresh or key not in _MEMO:
        status, js = post(ui, b)
        assert status == 200, f"HTTP {status}: {js}"
        _MEMO[key] = js
    return _MEMO[key]


def initedit_spec(js, i=0):
    """The resolved spec InitEdit wrote into image i's infotext (key "InitEdit", a quoted JSON text)."""
    text = js["info"]["infotexts"][i]
    if 'InitEdit: "' not in text:
        return None
    quoted, _ = json.JSONDecoder().raw_decode(text[text.index('InitEdit: "') + len("InitEdit: "):])
    return json.loads(quoted)


def digests(js, n=None):
    """sha256[:16] of the RGB pixels of the first n images (ControlNet appends its detected maps)."""
    from PIL import Image

    n = js["info"].get("batch_size", 1) if n is None else n
    out = []
    for b in js["images"][:n]:
        im = Image.open(io.BytesIO(base64.b64decode(b.split(",", 1)[-1]))).convert("RGB")
        out.append(hashlib.sha256(im.tobytes()).hexdigest()[:16])
    return out


def heatmap_digests(js):
    """Digests of the probe heatmap images InitEdit appends (spec "heatmaps": true)."""
    texts = js["info"].get("infotexts", [])
    idx = [i for i, t in enumerate(texts) if t.startswith("InitEdit probe heatmaps")]
    if len(texts) != len(js["images"]):  # should not happen; then the heatmaps are the last images
        idx = list(range(len(js["images"]) - len(idx), len(js["images"])))
    from PIL import Image

    return [hashlib.sha256(Image.open(io.BytesIO(base64.b64decode(js["images"][i]))).convert("RGB").tobytes())
            .hexdigest()[:16] for i in idx]


def initedit_error(js):
    """InitEdit's spec error and notes ("skipped for this batch: ...") in the first image's infotext."""
    return [t for t in js["info"].get("infotexts", [])[:1] if "InitEdit error" in t or "InitEdit note" in t]


# ----------------------------------------------------------------------------- ControlNet itself
def test_controlnet_version_and_unit_works_deterministically(cnui):
    ui, model = cnui
    status, v = ui.get("/controlnet/version")
    assert status == 200 and v.get("version") is not None
    plain = digests(run(ui))
    a = digests(run(ui, units=[canny(model)]))
    b = digests(run(ui, units=[canny(model)], fresh=True))
    none = digests(run(ui, units=[cn_unit(model, IMG, "none")]))
    assert a == b, "same ControlNet request, different pixels"
    assert a != plain and none != plain and none != a, "the ControlNet unit has no effect"


def test_initedit_off_gives_the_pixels_from_before_initedit_was_installed(cnui):
    """Golden digests from the lab without InitEdit; compared only where the numerics are the lab's."""
    ui, model = cnui
    if digests(run(ui)) != GOLDEN["plain"]:
        pytest.skip("not the lab's numerics (checkpoint/torch differ): the recorded digests do not apply")
    assert digests(run(ui, units=[cn_unit(model, IMG, "none")])) == GOLDEN["cn_none"]
    assert digests(run(ui, units=[canny(model)])) == GOLDEN["cn_canny"]
    assert digests(run(ui, units=[canny(model)], spec=[False, "{}"])) == GOLDEN["cn_canny"]
    assert digests(run(ui, units=[canny(model)], seed=SEED_R)) == GOLDEN["cn_canny_seed4321"]
    assert digests(run(ui, units=[canny(model), reference()], steps=3, batch_size=2)) == GOLDEN["batch2_canny_ref"]


def test_initedit_off_and_empty_change_nothing_with_controlnet(cnui):
    ui, model = cnui
    base = digests(run(ui, units=[canny(model)]))
    assert digests(run(ui, units=[canny(model)], spec=[False, json.dumps(LAYOUT)])) == base
    assert digests(run(ui, units=[canny(model)], spec={})) == base


@pytest.mark.parametrize("box", [[0, 0, 1, 1], [0.25, 0.25, 0.75, 0.75]])
def test_reroll_strength_zero_changes_nothing_with_controlnet(cnui, box):
    ui, model = cnui
    base = digests(run(ui, units=[canny(model)]))
    js = run(ui, units=[canny(model)], spec={"reroll": [{"box": box, "seed": SEED_R, "strength": 0.0}]})
    assert digests(js) == base
    assert initedit_spec(js)["reroll"][0]["strength"] == 0.0


def test_whole_image_reroll_is_the_reroll_seeds_controlnet_image(cnui):
    ui, model = cnui
    rerolled = run(ui, units=[canny(model)], spec={"reroll": [{"box": [0, 0, 1, 1], "seed": SEED_R, "strength": 1.0}]})
    assert digests(rerolled) == digests(run(ui, units=[canny(model)], seed=SEED_R))
    assert rerolled["info"]["seed"] == SEED  # the base seed stays; the reroll seed is in InitEdit's infotext


def test_region_reroll_with_controlnet_changes_the_image_deterministically(cnui):
    ui, model = cnui
    spec = {"reroll": [{"box": [0, 0, 0.5, 0.5], "seed": SEED_R, "strength": 1.0}]}
    a = digests(run(ui, units=[canny(model)], spec=spec))
    assert a == digests(run(ui, units=[canny(model)], spec=spec, fresh=True))
    assert a != digests(run(ui, units=[canny(model)]))


HIRES = dict(enable_hr=True, hr_scale=2, hr_upscaler="Latent", denoising_strength=0.6, hr_second_pass_steps=3)


def test_hires_with_controlnet_whole_reroll_is_the_reroll_seeds_image(cnui):
    """ControlNet switches to its hires hint in the second pass; with "hires": true the reroll follows there."""
    ui, model = cnui
    whole = {"reroll": [{"box": [0, 0, 1, 1], "seed": SEED_R, "strength": 1.0}], "hires": True}
    js = run(ui, units=[canny(model)], spec=whole, steps=3, **HIRES)
    assert not initedit_error(js), initedit_error(js)
    assert digests(js) == digests(run(ui, units=[canny(model)], seed=SEED_R, steps=3, **HIRES))
    off = digests(run(ui, units=[canny(model)], steps=3, **HIRES))
    assert digests(run(ui, units=[canny(model)], spec=[False, json.dumps(whole)], steps=3, **HIRES)) == off


# ----------------------------------------------------------------------------- layout
def test_layout_runs_with_controlnet(cnui):
    ui, model = cnui
    js = run(ui, units=[canny(model)], spec=LAYOUT_HEATMAPS)
    assert not initedit_error(js), initedit_error(js)
    assert initedit_spec(js)["layout"][0]["phrase"] == "cat"
    assert len(heatmap_digests(js)) == 1, "no probe heatmaps: the layout did not run (see the server console)"
    assert digests(js) == digests(run(ui, units=[canny(model)], spec=LAYOUT_HEATMAPS, fresh=True))
    assert digests(js) != digests(run(ui, units=[canny(model)]))


def test_layout_probe_does_not_see_controlnet_residuals(cnui):
    """By design of ControlNet, not of InitEdit: a ControlNet adds its residuals to the middle block and to
    the decoder's skip connections only, so the encoder's cross-attention (the probe layer,
    input_blocks.8) is the UNet's alone. The probe goes through CN's forward (the control model runs) and
    measures exactly the maps it measures without ControlNet; the edit is the same, the generation then
    follows the control image."""
    ui, model = cnui
    probe_only = {**LAYOUT_HEATMAPS, "guidance": 0}  # guided, the sheet's third column is a sampling step's
    without = heatmap_digests(run(ui, spec=probe_only, steps=3))
    with_cn = heatmap_digests(run(ui, units=[canny(model)], spec=probe_only, steps=3))
    assert without and with_cn == without


def test_layout_probe_sees_a_t2i_adapter(cnui):
    """A T2I-Adapter (also run by sd-webui-controlnet's forward) adds its features to the *encoder*, after input
    blocks 2, 5, 8 and 11; 2 and 5 lie before the probe layer. So, unlike a ControlNet, it changes the
    probe's maps: the probe goes through CN's forward and sees what it adds to the encoder."""
    ui, _ = cnui
    _, models = ui.get("/controlnet/model_list")
    titles = [m for m in models["model_list"] if m.split(" [")[0] == ADAPTER_STEM]
    if not titles:
        pytest.skip(f"no {ADAPTER_STEM!r}: run tests/tooling/make_tiny_controlnet.py --kind t2i-adapter")
    unit = cn_unit(titles[0], IMG, "none")
    assert digests(run(ui, units=[unit], steps=3)) != digests(run(ui, steps=3)), "the adapter has no effect"
    without = heatmap_digests(run(ui, spec=LAYOUT_HEATMAPS, steps=3))
    with_adapter = heatmap_digests(run(ui, units=[unit], spec=LAYOUT_HEATMAPS, steps=3))
    assert len(with_adapter) == 1 and with_adapter != without
    js = run(ui, units=[unit], spec=LAYOUT_HEATMAPS, steps=3, batch_size=2)
    assert len(digests(js)) == 2 and len(heatmap_digests(js)) == 2


def test_layout_batch2_several_steps_with_controlnet(cnui):
    ui, model = cnui
    js = run(ui, units=[canny(model)], spec=LAYOUT_HEATMAPS, steps=6, batch_size=2)
    assert len(digests(js)) == 2 and not initedit_error(js), initedit_error(js)
    assert len(heatmap_digests(js)) == 2, "no probe heatmaps: the layout did not run (see the server console)"
    assert digests(js) == digests(run(ui, units=[canny(model)], spec=LAYOUT_HEATMAPS, steps=6, batch_size=2, fresh=True))


def test_reroll_batch2_with_reference_unit(cnui):
    """Reroll does not call the UNet: CN's per-batch caches are filled by the sampler as without InitEdit."""
    ui, model = cnui
    units = [canny(model), reference()]
    base = digests(run(ui, units=units, steps=3, batch_size=2))
    zero = run(ui, units=units, steps=3, batch_size=2,
               spec={"reroll": [{"box": [0, 0, 0.5, 0.5], "seed": SEED_R, "strength": 0.0}]})
    assert digests(zero) == base
    one = run(ui, units=units, steps=3, batch_size=2,
              spec={"reroll": [{"box": [0, 0, 0.5, 0.5], "seed": SEED_R, "strength": 1.0}]})
    assert len(digests(one)) == 2 and digests(one) != base


def inpaint_only(model):
    """inpaint_only with a mask in txt2img: CN encodes the masked image once (used_hint_cond_latent) and pastes
    it back after every step."""
    from PIL import Image, ImageDraw

    mask = Image.new("RGB", (64, 64), "black")
    ImageDraw.Draw(mask).rectangle([16, 16, 48, 48], fill="white")
    buf = io.BytesIO()
    mask.save(buf, format="PNG")
    return cn_unit(model, {"image": IMG, "mask": base64.b64encode(buf.getvalue()).decode()}, "inpaint_only",
                   processor_res=-1)


@pytest.mark.parametrize("kind", ["reference_only", "inpaint_only"])
def test_layout_batch2_with_a_batch_caching_unit(cnui, kind):
    """Regression (docs/controlnet.md, finding 1): the probe is the first UNet call of the batch, with B cond
    rows; CN caches the reference/inpaint latent with the batch size of its first call (used_hint_cond_latent),
    so unless InitEdit makes CN forget it after the probe, the sampler's 2B-row call fails (reference-only: in
    predict_q_sample, HTTP 500 'The size of tensor a (4) must match the size of tensor b (2)')."""
    ui, model = cnui
    units = [canny(model), reference()] if kind == "reference_only" else [inpaint_only(model)]
    status, js = post(ui, body(units=units, spec=LAYOUT_HEATMAPS, steps=3, batch_size=2))
    assert status == 200, f"HTTP {status}: {js}"
    assert len(digests(js)) == 2
    assert len(heatmap_digests(js)) == 2, "the layout was skipped instead of run"
    assert digests(js) != digests(run(ui, units=units, steps=3, batch_size=2))


def test_layout_probe_measures_the_initial_noise_not_the_reference_pass(cnui):
    """Regression (docs/controlnet.md, finding 2): with reference-only, CN first runs the UNet on the noised
    reference latent inside the same forward; the probe must measure the pass over the initial noise, not stop
    in that pre-pass. A reference unit with weight 0 writes nothing into the attention banks: the generation
    is pixel-equal to no ControlNet at all (asserted first), so the probe and the layout result must be too."""
    ui, model = cnui
    assert digests(run(ui, units=[reference(0.0)], steps=3)) == digests(run(ui, steps=3))
    spec = {**LAYOUT_HEATMAPS, "guidance": 0.0}  # the noise edit alone (guidance: the test below)
    without = run(ui, spec=spec, steps=3)
    with_ref = run(ui, units=[reference(0.0)], spec=spec, steps=3)
    assert heatmap_digests(with_ref) == heatmap_digests(without)
    assert digests(with_ref) == digests(without)


# ----------------------------------------------------------------------------- keep and guidance with ControlNet
KEEP_BOX = [0.25, 0.25, 0.75, 0.75]


def _latest_latent():
    import glob

    import torch

    folder = os.environ.get("INITEDIT_LATENT_DIR")
    files = sorted(glob.glob(os.path.join(folder or "/nonexistent", "*.pt")), key=os.path.getmtime)
    if not files:
        pytest.skip("latent checks need tests/tooling/lab_ext_test_probe in the server and INITEDIT_LATENT_DIR")
    return torch.load(files[-1])["latents"]


def _unet_state(ui):
    status, state = ui.get("/initedit-test/unet")
    if status != 200:
        pytest.skip("the server lacks the test-only extension tests/tooling/lab_ext_test_probe")
    return state


def test_keep_1_outside_is_the_base_latent_with_controlnet(cnui):
    ui, model = cnui
    run(ui, units=[canny(model)], fresh=True)
    base = _latest_latent()
    spec = {"reroll": [{"box": KEEP_BOX, "seed": SEED_R}], "keep": 1.0, "keep_band": 0.0}  # outside = the whole rest
    js = run(ui, units=[canny(model)], spec=spec, fresh=True)
    kept = _latest_latent()
    assert not initedit_error(js)
    h, w = base.shape[-2:]
    out = base.new_ones(h, w).bool()
    out[int(KEEP_BOX[1] * h):int(KEEP_BOX[3] * h), int(KEEP_BOX[0] * w):int(KEEP_BOX[2] * w)] = False
    assert float((kept - base)[..., out].abs().max()) == 0.0
    assert float((kept - base)[..., ~out].abs().mean()) > 0.0


def test_keep_cache_hit_equals_a_miss_with_controlnet(cnui):
    ui, model = cnui
    spec = {"reroll": [{"box": KEEP_BOX, "seed": SEED_R}], "keep": 0.6}
    run(ui, units=[canny(model)], seed=77, fresh=True)  # remembers seed 77's base
    hit = digests(run(ui, units=[canny(model)], spec=spec, seed=77, fresh=True))
    miss = digests(run(ui, units=[canny(model)], spec=spec, seed=77, fresh=True,
                       override_settings={"sd_model_checkpoint": "tiny-sd15", "initedit_keep_cache_mb": 0}))
    assert hit == miss


GUIDED = {"layout": [{"phrase": "cat", "box": [0, 0, 0.5, 1]}, {"phrase": "red car", "box": [0.5, 0, 1, 1]}],
          "guidance": 6.0, "guidance_steps": 0.5}


def test_guidance_with_controlnet_changes_the_image(cnui):
    """Regression (finding 3): CN prepends a cond/uncond marker token to the conditioning and strips it inside
    its UNet forward, so the attention layers see one token less than the CFG denoiser's cond rows."""
    ui, model = cnui
    a = run(ui, units=[canny(model)], spec=GUIDED, steps=6, fresh=True)
    off = run(ui, units=[canny(model)], spec={**GUIDED, "guidance": 0.0}, steps=6, fresh=True)
    assert digests(a) != digests(off)


def test_guidance_with_a_weight_0_reference_unit_is_the_image_without_controlnet(cnui):
    """Regression (finding 4, the same cause as finding 3)."""
    ui, model = cnui
    without = run(ui, spec=LAYOUT_HEATMAPS, steps=3)
    with_ref = run(ui, units=[reference(0.0)], spec=LAYOUT_HEATMAPS, steps=3)
    assert digests(with_ref) == digests(without)


def test_guidance_with_controlnet_runs_deterministically_and_restores_the_unet(cnui):
    ui, model = cnui
    run(ui, units=[canny(model)], steps=6, fresh=True)
    before = _unet_state(ui)  # whatever ControlNet itself leaves between generations
    a = run(ui, units=[canny(model)], spec=GUIDED, steps=6, fresh=True)
    b = run(ui, units=[canny(model)], spec=GUIDED, steps=6, fresh=True)
    off = run(ui, units=[canny(model)], spec={**GUIDED, "guidance": 0.0}, steps=6, fresh=True)
    assert not initedit_error(a) and not initedit_error(off)
    assert digests(a) == digests(b)
    assert _unet_state(ui) == before


def test_guidance_batch2_with_a_reference_only_unit(cnui):
    ui, _ = cnui
    run(ui, units=[reference()], steps=4, batch_size=2, fresh=True)
    before = _unet_state(ui)
    js = run(ui, units=[reference()], spec=GUIDED, steps=4, batch_size=2, fresh=True)
    assert len(digests(js, 2)) == 2 and not initedit_error(js)
    assert _unet_state(ui) == before
