"""InitEdit in a real ComfyUI (CPU, the lab's tiny checkpoint): the same guarantees as in the WebUI.

Compared bit for bit through SaveLatent files (the sampler's output latent) unless said otherwise.
"""
import io
import json

import numpy as np
import pytest

import workflows as wf
from comfy_client import PromptFailed, PromptRejected

WHOLE = [0.0, 0.0, 1.0, 1.0]
SAMPLERS = ["euler", "euler_ancestral", "dpmpp_2m", "dpmpp_sde", "dpmpp_2m_sde"]


def latent(comfy, outputs, node="8"):
    from safetensors.torch import load

    return load(comfy.view(outputs[node]["latents"][0]))["latent_tensor"]


def run_latent(comfy, graph):
    return latent(comfy, comfy.run(graph))


def test_nodes_are_registered_under_one_category(comfy):
    info = comfy.get_json("/object_info")
    ours = {name: node for name, node in info.items() if name.startswith("InitEdit") and "Test" not in name}
    assert set(ours) == {"InitEditRegionReroll", "InitEditLayout", "InitEditHeatmaps"}
    assert {node["category"] for node in ours.values()} == {"InitEdit"}
    assert ours["InitEditLayout"]["output"] == ["MODEL", "CONDITIONING"]
    assert ours["InitEditHeatmaps"]["output"] == ["IMAGE"]


def test_strength_zero_is_identical_to_plain(comfy):
    plain = run_latent(comfy, wf.base(seed=11, sampler="euler_ancestral"))
    spec = {"reroll": [{"box": [0.1, 0.1, 0.6, 0.6], "seed": 99, "strength": 0.0}], "keep": 0.0}
    edited = run_latent(comfy, wf.with_reroll(wf.base(seed=11, sampler="euler_ancestral"), spec))
    assert edited.equal(plain)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_whole_image_reroll_at_strength_1_is_seed_r(comfy, sampler):
    """Per-step (ancestral) and Brownian (SDE) noise follow the reroll seed too."""
    target = run_latent(comfy, wf.base(seed=4242, sampler=sampler))
    spec = {"reroll": [{"box": WHOLE, "seed": 4242, "strength": 1.0}], "keep": 0.0}
    got = run_latent(comfy, wf.with_reroll(wf.base(seed=7, sampler=sampler), spec))
    plain = run_latent(comfy, wf.base(seed=7, sampler=sampler))
    assert not got.equal(plain)
    assert got.equal(target), (got - target).abs().max()


def test_whole_image_reroll_under_sampler_custom_advanced(comfy):
    target = run_latent(comfy, wf.custom_advanced(wf.base(sampler="euler_ancestral"), noise_seed=555,
                                                  sampler="euler_ancestral"))
    spec = {"reroll": [{"box": WHOLE, "seed": 555, "strength": 1.0}], "keep": 0.0}
    g = wf.with_reroll(wf.base(sampler="euler_ancestral"), spec)
    g = wf.custom_advanced(g, model=("20", 0), sampler="euler_ancestral", noise_seed=3)
    assert run_latent(comfy, g).equal(target)


def test_mask_input_whole_image_is_seed_r(comfy):
    target = run_latent(comfy, wf.base(seed=808))
    g = wf.with_reroll(wf.base(seed=1), '{"keep": 0}', mask_node="50")
    g["50"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 128, "height": 128}}
    g["20"]["inputs"].update({"mask_seed": 808, "mask_strength": 1.0, "mask_feather": 0.0})
    assert run_latent(comfy, g).equal(target)


@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral", "heun", "dpm_2"])
def test_keep_1_keeps_the_latent_outside_bit_for_bit(comfy, sampler):
    base = run_latent(comfy, wf.base(seed=21, sampler=sampler))
    spec = {"reroll": [{"box": [0.25, 0.25, 0.75, 0.75], "seed": 77, "strength": 1.0}], "keep": 1.0, "keep_band": 0.0}
    got = run_latent(comfy, wf.with_reroll(wf.base(seed=21, sampler=sampler), spec))
    h, w = got.shape[-2:]
    inside = np.zeros((h, w), bool)
    inside[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = True
    outside = ~inside
    assert got[:, :, outside].equal(base[:, :, outside])
    # with a band (0.1 of 16 cells), the outside beyond the band is still the base's, bit for bit
    banded = run_latent(comfy, wf.with_reroll(wf.base(seed=21, sampler=sampler), {**spec, "keep_band": 0.1}))
    near = np.zeros((h, w), bool)
    near[h // 4 - 2: 3 * h // 4 + 2, w // 4 - 2: 3 * w // 4 + 2] = True
    assert banded[:, :, ~near].equal(base[:, :, ~near])
    assert not banded[:, :, near & outside].equal(base[:, :, near & outside])  # the band is released gradually
    assert (got[:, :, inside] - base[:, :, inside]).abs().mean() > 0.05
    free = run_latent(comfy, wf.with_reroll(wf.base(seed=21, sampler=sampler), {**spec, "keep": 0.0}))
    assert not free[:, :, outside].equal(base[:, :, outside])  # keep 0: the outside may move (the check can fail)


@pytest.mark.parametrize("sampler, second_order", [("euler", False), ("heun", True), ("dpm_2", True)])
def test_keep_counts_the_samplers_steps(comfy, sampler, second_order):
    """keep 0.5 keeps half of the steps (both calls of a Heun or DPM2 step); "fraction_of": "calls" keeps half of
    the model calls: the same on Euler, another latent on the second-order samplers."""
    spec = {"reroll": [{"box": [0.25, 0.25, 0.75, 0.75], "seed": 77, "strength": 1.0}], "keep": 0.5, "keep_band": 0.0}
    by_steps = run_latent(comfy, wf.with_reroll(wf.base(seed=21, sampler=sampler), spec))
    by_calls = run_latent(comfy, wf.with_reroll(wf.base(seed=21, sampler=sampler), {**spec, "fraction_of": "calls"}))
    assert by_steps.equal(by_calls) != second_order


def test_batch_whole_reroll_is_seed_r_batch(comfy):
    target = run_latent(comfy, wf.base(seed=31, sampler="euler_ancestral", batch=2))
    spec = {"reroll": [{"box": WHOLE, "seed": 31, "strength": 1.0}], "keep": 0.0}
    got = run_latent(comfy, wf.with_reroll(wf.base(seed=5, sampler="euler_ancestral", batch=2), spec))
    assert got.shape[0] == 2 and got.equal(target)


def test_batch_vary_reroll_gives_image_b_seed_r_plus_b(comfy):
    spec = {"reroll": [{"box": WHOLE, "seed": 40, "strength": 1.0}], "keep": 0.0, "vary": "reroll"}
    got = run_latent(comfy, wf.with_reroll(wf.base(seed=5, batch=2), spec))
    singles = [run_latent(comfy, wf.base(seed=40 + b))[0] for b in range(2)]
    for b in range(2):
        # a batch of 2 and a single image differ in the last bits in ComfyUI itself (batched matmuls)
        err = float((got[b] - singles[b]).abs().max() / singles[b].abs().max())
        other = float((got[b] - singles[1 - b]).abs().max() / singles[b].abs().max())
        assert err < 1e-4 and other > 0.1, (b, err, other)


def inspect_shared(comfy, graph):
    g = dict(graph)
    g["60"] = {"class_type": "InitEditTestInspectModel", "inputs": {"model": ["1", 0], "after": ["5", 0]}}
    outputs = comfy.run(g)
    return json.loads(outputs["60"]["text"][0])


def test_the_inspector_sees_initedits_wrappers_on_a_patched_model(comfy):
    """The leftover checks below can fail: on the Region Reroll node's own MODEL the inspector finds them."""
    g = wf.with_reroll(wf.base(seed=3), {"reroll": [{"box": [0, 0, 0.5, 0.5], "seed": 2}], "keep": 0.0})
    g["60"] = {"class_type": "InitEditTestInspectModel", "inputs": {"model": ["20", 0], "after": ["5", 0]}}
    report = json.loads(comfy.run(g)["60"]["text"][0])
    assert {kind for kind, keys in report["wrappers"].items() if "initedit" in keys} == \
        {"outer_sample", "sampler_sample", "predict_noise"}, report
    assert "initedit" in report["options"]


def assert_clean(report):
    assert not any("initedit" in keys for keys in report["wrappers"].values()), report
    assert "initedit" not in report["options"], report
    assert report["own_forwards"] == [] and report["hooks"] == [], report


def test_layout_and_guidance_run_and_leave_nothing_on_the_shared_model(comfy):
    plain = run_latent(comfy, wf.base(seed=3, size=256))
    spec = {"layout": [{"phrase": "cat", "box": [0.0, 0.25, 0.5, 0.75]},
                       {"phrase": "red car", "box": [0.5, 0.25, 1.0, 0.75]}], "heatmaps": True}
    g = wf.with_layout(wf.base(seed=3, size=256), spec, heatmaps=True)
    report = inspect_shared(comfy, g)
    assert_clean(report)
    outputs = comfy.run(g)
    laid = latent(comfy, outputs)
    assert not laid.equal(plain)
    sheet = comfy.images(outputs, "32")[0]
    assert sheet.shape[0] > 100 and sheet.shape[1] > 200 and sheet.std() > 5  # 2 phrases x 3 columns
    # guidance off: only the noise edit (a permutation of whole blocks) -> still differs, runs
    no_guidance = latent(comfy, comfy.run(wf.with_layout(wf.base(seed=3, size=256), {**spec, "guidance": 0})))
    assert not no_guidance.equal(laid)


def test_bad_spec_is_a_node_error_naming_the_field_and_the_queue_goes_on(comfy):
    bad = {"reroll": [{"box": [0.5, 0.1, 0.2, 0.9], "seed": 1}]}
    with pytest.raises(PromptRejected) as info:
        comfy.queue(wf.with_reroll(wf.base(seed=1), bad))
    errors = json.dumps(info.value.body["node_errors"])
    assert "reroll[0].box: x1 (0.2) must be greater than x0 (0.5)" in errors
    with pytest.raises(PromptRejected) as info:
        comfy.queue(wf.with_layout(wf.base(seed=1), {"layout": [{"phrase": "cat", "box": [0, 0, 1, 1]}],
                                                     "rounds": 99}))
    assert "rounds: 99 is outside 1..8" in json.dumps(info.value.body["node_errors"])
    # a phrase not in the prompt is found only when the node runs: an execution error naming the box
    with pytest.raises(PromptFailed) as failed:
        comfy.run(wf.with_layout(wf.base(seed=1), {"layout": [{"phrase": "giraffe", "box": [0, 0, 1, 1]}]}))
    assert "layout[0].phrase" in str(failed.value) and "giraffe" in str(failed.value)
    assert run_latent(comfy, wf.base(seed=2)).shape[0] == 1  # the next prompt runs


def test_guidance_acts_through_attn2_replace_patches(comfy):
    """An IPAdapter-style replace patch on every attn2 (plain attention, so the image is unchanged): attn2.forward
    never runs, yet guidance changes the image exactly as without the patch."""
    spec = {"layout": [{"phrase": "cat", "box": [0.0, 0.0, 0.5, 1.0]}, {"phrase": "red car", "box": [0.5, 0, 1, 1]}]}

    def graph(patched, guidance):
        g = wf.with_layout(wf.base(seed=9, size=128), spec if guidance else {**spec, "guidance": 0})
        if patched:
            g["70"] = {"class_type": "InitEditTestPlainReplacePatch", "inputs": {"model": ["1", 0]}}
            g["30"]["inputs"]["model"] = ["70", 0]
        return g

    guided = run_latent(comfy, graph(False, True))  # the spec's default guidance
    guided_patched = run_latent(comfy, graph(True, True))
    unguided_patched = run_latent(comfy, graph(True, False))
    assert not guided_patched.equal(unguided_patched)
    assert (guided_patched - guided).abs().max() < 1e-4, (guided_patched - guided).abs().max()


@pytest.mark.parametrize("name", ["initedit_region_reroll.json", "initedit_layout_two_boxes.json"])
def test_example_workflows_run(comfy, name):
    """The shipped example workflows (API format), with the lab's checkpoint, 128 px and 4 steps instead of the
    user's. The UI-format copies are run from the frontend in test_comfy_frontend.py."""
    graph = json.loads((wf.REPO / "example_workflows" / "api" / name).read_text())
    for node in graph.values():
        inputs = node["inputs"]
        if node["class_type"] == "CheckpointLoaderSimple":
            inputs["ckpt_name"] = wf.CKPT
        if node["class_type"] == "EmptyLatentImage":
            inputs.update(width=128, height=128)
        if node["class_type"] == "KSampler":
            inputs["steps"] = 4
    outputs = comfy.run(graph)
    saved = [node for node, out in outputs.items() if out.get("images")]
    assert len(saved) == 2, outputs  # reroll: before / after; layout: image / heatmaps
    for node in saved:
        assert comfy.images(outputs, node)[0].std() > 1


def test_an_interrupt_inside_a_guided_layout_leaves_nothing_on_the_shared_model(comfy):
    spec = {"layout": [{"phrase": "cat", "box": [0.0, 0.25, 0.5, 0.75]},
                       {"phrase": "red car", "box": [0.5, 0.25, 1.0, 0.75]}], "guidance_steps": 1.0}
    g = wf.with_reroll(wf.with_layout(wf.base(seed=13, size=256, steps=40), spec),
                       {"reroll": [{"box": [0, 0, 0.5, 0.5], "seed": 2}], "keep": 1.0})
    g["20"]["inputs"]["model"] = ["30", 0]  # checkpoint -> Layout -> Region Reroll -> KSampler
    g["5"]["inputs"]["model"] = ["20", 0]
    assert comfy.interrupt_when(g, step=3) == "execution_interrupted"
    assert_clean(inspect_shared(comfy, wf.base(seed=14)))
    # and the same graph runs to the end afterwards
    g["5"]["inputs"]["steps"] = 4
    assert run_latent(comfy, g).shape[0] == 1
