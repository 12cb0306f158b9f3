"""The layout benchmark's strata are what they say, and "default" measures exactly what the extension does."""
from __future__ import annotations

import pytest
import torch

from lib_initedit.layout import guidance
from lib_initedit.layout import probe
from lib_initedit.sampling_hooks import SamplingHooks
from lib_initedit.spec import InitEditSpec
from lib_initedit.toy import ablation, bench, boxes as boxes_mod, detect, score as score_mod
from lib_initedit.toy.model import load
from lib_initedit.toy.pipe import ToyPipe, seed_noise

torch.set_num_threads(1)


def sides(box):
    return box[2] - box[0], box[3] - box[1]


def test_strata_are_what_they_say():
    for name, st in boxes_mod.STRATA.items():
        cases = boxes_mod.layout_cases(name, 30)
        assert cases == boxes_mod.layout_cases(name, 30)  # fixed seed lists
        for case in cases:
            boxes = case["boxes"]
            assert len(boxes) == st.k == len(case["phrases"]) == len(set(case["colours"]))
            assert all(0 <= b[0] < b[2] <= 1 and 0 <= b[1] < b[3] <= 1 for b in boxes)
            assert all(detect.iou(a, b) == 0 for i, a in enumerate(boxes) for b in boxes[i + 1:])
            if name.startswith("small"):
                assert all(0.16 <= s <= 0.3 for box in boxes for s in sides(box))
            if name == "large1":
                assert all(s >= 0.48 for s in sides(boxes[0]))
            if name.startswith("thin"):
                assert all(max(sides(b)) / min(sides(b)) >= 2.5 for b in boxes)
            if name.startswith("adjacent"):
                row = all(abs(a[2] - b[0]) < 1e-9 and a[1] == b[1] for a, b in zip(boxes, boxes[1:]))
                col = all(abs(a[3] - b[1]) < 1e-9 and a[0] == b[0] for a, b in zip(boxes, boxes[1:]))
                assert row or col
            if name.startswith("border"):
                assert all(b[0] == 0 or b[1] == 0 or b[2] == 1 or b[3] == 1 for b in boxes)
            if name.startswith("corner"):
                assert all((b[0] == 0 or b[2] == 1) and (b[1] == 0 or b[3] == 1) for b in boxes)
                assert all(0.2 <= s <= 0.3 for box in boxes for s in sides(box))
            if name.startswith("edge"):
                touching = [{e for e, hit in enumerate((b[0] == 0, b[1] == 0, b[2] == 1, b[3] == 1)) if hit}
                            for b in boxes]
                assert set.intersection(*touching)  # one edge that every box touches
                assert all(0.2 <= s <= 0.3 for box in boxes for s in sides(box))
    # the random-box cells keep the seeds of the earlier benchmark (sample i of k objects: seed 1000 k + i)
    assert [c["caption"] for c in boxes_mod.layout_cases(2, 3)] == [c["caption"] for c in boxes_mod.layout_cases("2", 3)]


def test_leak_counts_a_second_copy_and_an_object_outside_its_box():
    img = -torch.ones(3, 32, 32) * 0.5  # background gray
    red = torch.tensor([0.92, 0.12, 0.12]) * 2 - 1
    img[:, 2:8, 2:8] = red[:, None, None]
    case = dict(colours=["red"], shapes=["square"], boxes=[(0, 0, 0.5, 0.5)])
    assert score_mod.score(img[None], [case])["leak"] == 0 and score_mod.score(img[None], [case])["success"] == 1
    twice = img.clone()
    twice[:, 20:26, 20:26] = red[:, None, None]  # a second red object outside the box
    res = score_mod.score(twice[None], [case])
    assert res["leak"] == 1 and res["success"] == 1


def test_by_width_splits_cases_at_the_narrow_side():
    img = -torch.ones(2, 3, 32, 32) * 0.5
    red = torch.tensor([0.92, 0.12, 0.12]) * 2 - 1
    img[0, :, 2:6, 2:6] = red[:, None, None]  # case 0: its red square inside its narrow box; case 1: none
    narrow = dict(colours=["red"], shapes=["square"], boxes=[(0.0, 0.0, 0.2, 0.5)])
    wide = dict(colours=["red"], shapes=["square"], boxes=[(0.0, 0.0, 0.3, 0.5)])
    split = score_mod.by_width(img, [narrow, wide])
    assert split == dict(success_narrow=1.0, n_narrow=1, success_wide=0.0, n_wide=1)


@pytest.fixture(scope="module")
def pipe():
    return ToyPipe(load(), steps=4)


def test_default_method_is_the_spec_default_through_the_library(pipe):
    assert bench.spec_of(ablation.METHODS["default"]) == InitEditSpec()
    cases = boxes_mod.layout_cases("2", 3)
    images, info = bench.run_method(pipe, cases, ablation.METHODS["default"])
    # the same through the entry points by hand
    spec = InitEditSpec()
    noise = torch.stack([seed_noise(c["noise_seed"]) for c in cases])
    caps = [c["caption"] for c in cases]
    pos = [pipe.phrase_positions(c["caption"], c["phrases"]) for c in cases]
    boxes = [c["boxes"] for c in cases]
    res = probe.run_layout(pipe.unet, pipe.probe_call(caps), noise, pos, boxes, **probe.layout_options(spec))
    guide = guidance.LayoutGuidance.from_spec(pipe.unet, spec, pos, boxes)
    if guide.enabled:
        expected = pipe.generate(res.noise, caps, hooks=SamplingHooks([guide]))
        assert info["guided_calls"] == guide.calls_guided > 0
    else:
        expected = pipe.generate(res.noise, caps)
    assert torch.allclose(images, expected, atol=1e-5)
    # a default changed in the spec changes what "default" measures
    off, _ = bench.run_method(pipe, cases, dict(guidance=0.0))
    assert not torch.allclose(off, images, atol=1e-3) or InitEditSpec().guidance == 0
