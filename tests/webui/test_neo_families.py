"""Region reroll and keep on Forge Neo's non-UNet model families, through its API (tiny random-weight checkpoints
of the families' real key layouts, built by the lab: ``NEO_FAMILIES=lumina2 LINE=neo tests/tooling/forge_lab.sh
setup``).

Either ``INITEDIT_NEO_URL``: a running Forge Neo with InitEdit installed, or ``INITEDIT_NEO_DIR``: an installed
Neo (the lab's ``$NEO_LAB/webui``; ``INITEDIT_NEO_PYTHON`` / ``INITEDIT_NEO_MODELS`` as for the Forge tests):
then a server is started on a free loopback port with a temporary data dir linking this checkout. Without
either: skipped; a family whose checkpoint is absent: skipped, saying how to build it.

What holds on a diffusion transformer with flow matching as on SD: disabled and strength 0 change nothing, a
whole-image reroll at strength 1 is exactly seed R's image (Euler, and Euler a whose per-step noise follows
the reroll), keep 1 holds the outside far closer than keep 0, the spec is in the infotext; layout is refused
before anything runs (HTTP 422 naming ``layout`` and the family) or, in a run, dropped with a note.
"""
from __future__ import annotations

import glob
import json
import os
import tempfile

import numpy as np
import pytest
import torch

from tests.webui.forge_family import start_forge_family
from tests.webui.helpers import ROOT, infotext, initedit_of, pixels, stop_server
from tests.webui.test_forge import Forge

pytestmark = pytest.mark.lab  # needs the Neo lab (tests/tooling/forge_lab.sh, LINE=neo)

SKIP_REASON = ("no Forge Neo given: set INITEDIT_NEO_URL to a running Neo with InitEdit installed, or "
               "INITEDIT_NEO_DIR to an installed one (LINE=neo tests/tooling/forge_lab.sh builds it; docs/forge.md)")
# checkpoint (models/Stable-diffusion/<name>.safetensors) -> the family's diffusion engine class in Neo
FAMILIES = {"tiny-neo-lumina2": "Lumina2", "tiny-neo-anima": "Anima"}
# the latent the sampler sees, per image (Anima: the Wan VAE's (C, T, H, W), T = 1 for an image)
LATENT = {"Lumina2": (16, 16, 16), "Anima": (16, 1, 16, 16)}
WHOLE = {"reroll": [{"box": [0, 0, 1, 1], "seed": 4242, "strength": 1.0}]}
BOX = [0, 0, 0.5, 0.5]


@pytest.fixture(scope="module")
def neo():
    url = os.environ.get("INITEDIT_NEO_URL")
    if url:
        yield Forge(url)
        return
    webui_dir = os.environ.get("INITEDIT_NEO_DIR")
    if not webui_dir:
        pytest.skip(SKIP_REASON)
    # the latent-probe test extension saves every first pass's latent there (its post_sample), for keep's
    # check in the latent: the VAE decoder mixes across the whole image (its mid-block attends globally)
    latents = tempfile.mkdtemp(prefix="initedit-neo-latents-")
    before = os.environ.get("INITEDIT_LATENT_DIR")
    os.environ["INITEDIT_LATENT_DIR"] = latents
    try:
        proc, url, log = start_forge_family(webui_dir, "INITEDIT_NEO", startup_s=400, links={
            "initedit-test-probe": os.path.join(ROOT, "tests", "tooling", "lab_ext_test_probe")})
    finally:
        if before is None:
            os.environ.pop("INITEDIT_LATENT_DIR", None)
        else:
            os.environ["INITEDIT_LATENT_DIR"] = before
    try:
        server = Forge(url)
        server.log, server.latents = log, latents
        yield server
    finally:
        stop_server(proc)


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request, neo):
    """Load the family's checkpoint (so the API's layout check sees it loaded); (server, family name)."""
    status, models = neo.get("/sdapi/v1/sd-models")
    title = next((m["title"] for m in models if m["model_name"] == request.param), None)
    if title is None:
        pytest.skip(f"no {request.param} checkpoint (NEO_FAMILIES={request.param.split('-')[-1]} LINE=neo "
                    "tests/tooling/forge_lab.sh setup builds it)")
    status, js = neo.request("POST", "/sdapi/v1/options", {"sd_model_checkpoint": title})
    assert status == 200, js
    neo.title = title
    return neo, FAMILIES[request.param]


def gen(server, spec=None, **fields):
    return server.txt2img(spec, **fields)


def test_the_family_generates_deterministically(family):
    neo, name = family
    a, b = pixels(gen(neo)), pixels(gen(neo))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, pixels(gen(neo, seed=2)))


def test_disabled_and_strength_zero_change_nothing(family):
    neo, _ = family
    base = pixels(gen(neo))
    assert np.array_equal(pixels(gen(neo, [False, json.dumps(WHOLE)])), base)
    zero = {"reroll": [{"box": [0, 0, 1, 1], "seed": 4242, "strength": 0.0}]}
    assert np.array_equal(pixels(gen(neo, zero)), base)


@pytest.mark.parametrize("sampler", ["Euler", "Euler a"])
def test_whole_reroll_at_strength_1_is_the_reroll_seeds_image(family, sampler):
    """Flow matching starts from the noise itself; Euler a's per-step noise follows the reroll seed too."""
    neo, _ = family
    js = gen(neo, WHOLE, sampler_name=sampler)
    text = infotext(js)
    assert "not applied" not in text and "InitEdit error" not in text, text
    assert initedit_of(js)["reroll"][0]["seed"] == 4242
    assert np.array_equal(pixels(js), pixels(gen(neo, seed=4242, sampler_name=sampler)))


def last_latent(server) -> torch.Tensor:
    files = sorted(glob.glob(os.path.join(server.latents, "*.pt")))
    assert files, "the latent-probe extension saved nothing"
    return torch.load(files[-1])["latents"]


def test_keep_1_keeps_the_latent_outside_bit_for_bit(family):
    """keep 1: the first pass's latent outside the region is the base's, bit for bit (16 channels, flow
    matching); keep 0: the model's attention carries the region's change outside; inside it changes either way."""
    neo, _ = family
    if getattr(neo, "latents", None) is None:
        pytest.skip("needs the latent-probe test extension (INITEDIT_NEO_DIR mode installs it)")
    size = dict(width=128, height=128)
    gen(neo, **size)
    base = last_latent(neo)
    spec = {"reroll": [{"box": BOX, "seed": 7, "strength": 1.0}]}
    gen(neo, {**spec, "keep": 1.0, "keep_band": 0.0}, **size)
    kept = last_latent(neo)
    gen(neo, {**spec, "keep": 0.0}, **size)
    free = last_latent(neo)
    assert tuple(base.shape) == (1, *LATENT[family[1]]), base.shape  # 16 channels at 1/8 (128 px)
    outside = torch.ones(16, 16, dtype=torch.bool)
    outside[:8, :8] = False
    mask = outside.expand(base.shape)
    assert torch.equal(kept[mask], base[mask])
    assert not torch.equal(free[mask], base[mask])
    assert not torch.equal(kept[~mask], base[~mask])


def test_layout_is_refused_naming_layout_and_the_family(family):
    neo, name = family
    body = {"prompt": "a cat and a dog", "steps": 4, "width": 64, "height": 64, "seed": 1,
            "alwayson_scripts": {"InitEdit": {"args": [{"layout": [{"phrase": "cat", "box": [0, 0, 0.5, 1]}]}]}}}
    status, js = neo.request("POST", "/sdapi/v1/txt2img", body)
    assert status == 422, (status, str(js)[:300])
    assert js["detail"].startswith("layout: ") and name in js["detail"], js
    status, js = neo.request("POST", "/initedit/v1/validate", {"spec": {"layout": [{"phrase": "cat", "box": [0, 0, 1, 1]}]}})
    assert status == 200 and js["error"].startswith("layout: ") and name in js["error"], js


def test_layout_in_a_run_is_dropped_with_a_note_and_the_regions_still_run(family):
    """A request that names its model (override_settings) is not judged before it runs (the model may change):
    the run drops the layout, says so in the infotext, and the reroll in the same spec still happens."""
    neo, name = family
    spec = {**WHOLE, "layout": [{"phrase": "cat", "box": [0, 0, 0.5, 1]}]}
    js = gen(neo, spec, checkpoint=neo.title)
    text = infotext(js)
    assert "InitEdit note" in text and "layout: not applied" in text and name in text, text
    assert "layout" not in initedit_of(js)
    assert np.array_equal(pixels(js), pixels(gen(neo, seed=4242)))
