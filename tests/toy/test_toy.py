"""Toy world: the bundled model loads and samples deterministically, the detector finds planted
shapes, and a tiny benchmark run completes. Pure torch, CPU, well under a minute."""
from __future__ import annotations

import pytest
import torch

from lib_initedit.toy import bench, detect
from lib_initedit.toy.data import Obj, make_scene, render
from lib_initedit.toy.model import DEFAULT_WEIGHTS, load
from lib_initedit.toy.pipe import ToyPipe, seed_noise
from lib_initedit.toy.tokenizer import Tokenizer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def pipe():
    return ToyPipe(load(), steps=8)


def test_tokenizer_roundtrip_and_positions():
    tok = Tokenizer()
    cap = "a red circle and a blue square"
    assert tok.decode(tok.encode(cap)) == cap
    ids = tok.chunk_ids(cap)
    assert len(ids) == 77 and ids[0] == tok.bos and ids[-1] == tok.eos
    assert tok.phrase_positions(cap, "blue square") == [6, 7]
    with pytest.raises(ValueError):
        tok.encode("a purple cat")


def test_scenes_are_deterministic_and_caption_matches_objects():
    a, b = make_scene(123), make_scene(123)
    assert torch.equal(a.image, b.image) and a.caption == b.caption
    for o in a.objects:
        assert o.phrase in a.caption
    assert a.image.shape == (3, 32, 32) and a.image.min() >= -1 and a.image.max() <= 1


def test_model_is_ldm_shaped():
    import os

    assert os.path.getsize(DEFAULT_WEIGHTS) <= 10 * 2**20
    from lib_initedit.layout import attention

    m = load()
    layers = attention.find_cross_attention(m.unet)
    paper = attention.select_layers(layers, "paper")
    level = attention.select_layers(layers, "level")
    assert [l.name for l in paper] == ["input_blocks.6.1.transformer_blocks.0.attn2"]
    assert len(level) == 2 and all(l.level == 2 for l in level)


def test_sampling_is_deterministic(pipe):
    x = torch.stack([seed_noise(1), seed_noise(2)])
    caps = ["a red circle", "a blue square and a white triangle"]
    a = pipe.generate(x, caps)
    b = pipe.generate(x.clone(), caps)
    assert torch.equal(a, b)
    assert a.shape == (2, 3, 32, 32)
    assert not torch.allclose(a[0], a[1])


def test_the_start_token_takes_most_of_the_attention(pipe):
    """The shipped toy attends like SD: the start token takes most of each query's cross-attention."""
    from lib_initedit.toy.attention_stats import attention_stats

    stats = attention_stats(pipe, n=2)
    assert stats["start"]["median"] > 0.5 and stats["top"]["median"] >= stats["start"]["median"]
    assert stats["range"]["median"] > 4


def test_scenes_may_touch_overlap_and_sit_at_the_border():
    from lib_initedit.toy.data import random_objects

    import numpy as np
    rng = np.random.default_rng(0)
    scenes = [random_objects(rng, 3) for _ in range(300)]
    gaps = [np.hypot(a.cx - b.cx, a.cy - b.cy) - a.r - b.r for objs in scenes
            for i, a in enumerate(objs) for b in objs[i + 1:]]
    assert min(gaps) < 0 and sum(g > 1 for g in gaps) > len(gaps) / 3  # overlaps, and scenes kept apart
    near = [o for objs in scenes for o in objs if min(o.cx, o.cy, 32 - o.cx, 32 - o.cy) < o.r]
    assert near and all(min(o.cx, o.cy, 32 - o.cx, 32 - o.cy) >= 0.3 * o.r - 1e-9 for objs in scenes for o in objs)
    # the default ("corners") style also puts objects into the corners, cut deeper than 0.7 r
    corner = [o for o in near if max(min(o.cx, 32 - o.cx), min(o.cy, 32 - o.cy)) < o.r]
    assert len(corner) > 0.15 * sum(map(len, scenes))  # ("touching": about 0.06)
    assert any(min(o.cx, o.cy, 32 - o.cx, 32 - o.cy) < 0.7 * o.r for o in near)


def test_the_second_stages_scenes_are_still_drawn_as_they_were():
    """--scenes touching draws the scenes the second training stage saw: centres at least 0.7 r from a
    border, few objects in a corner (only by chance)."""
    from lib_initedit.toy.data import random_objects

    import numpy as np
    rng = np.random.default_rng(0)
    objs = [o for _ in range(300) for o in random_objects(rng, 3, style="touching")]
    assert all(min(o.cx, o.cy, 32 - o.cx, 32 - o.cy) >= 0.7 * o.r - 1e-9 for o in objs)
    corner = [o for o in objs if max(min(o.cx, 32 - o.cx), min(o.cy, 32 - o.cy)) < o.r]
    assert len(corner) < 0.1 * len(objs)  # (the "corners" style: about 0.2)


@pytest.mark.parametrize("shape", ["circle", "square", "triangle"])
def test_detector_finds_planted_shapes(shape):
    objs = [Obj("red", shape, 8.0, 9.0, 5.0), Obj("yellow", "circle", 23.0, 22.0, 6.0)]
    img = render(objs)
    dets = detect.detect_all(img, ["red", "yellow", "blue"])
    assert dets["blue"] is None
    r, y = dets["red"], dets["yellow"]
    assert abs(r.cx - 8.0) < 1.0 and abs(r.cy - (9.0 + (5.0 / 3 if shape == "triangle" else 0))) < 1.0
    assert abs(y.cx - 23.0) < 0.6 and abs(y.cy - 22.0) < 0.6
    assert detect.iou(y.box, objs[1].box) > 0.7
    assert r.shape == shape


def test_detector_on_random_scenes():
    hits = total = 0
    for s in range(40):
        sc = make_scene(s)
        dets = detect.detect_all(sc.image, [o.colour for o in sc.objects])
        for o in sc.objects:
            total += 1
            d = dets[o.colour]
            hits += d is not None and o.box[0] <= d.cx <= o.box[2] and o.box[1] <= d.cy <= o.box[3]
    assert hits == total


def test_tiny_benchmark_completes(pipe, tmp_path):
    res = bench.main(["--n", "2", "--steps", "4", "--counts", "1,2", "--methods", "none,paper,rounds2",
                      "--json", str(tmp_path / "b.json")])
    assert set(res["layout"]) == {f"{k}|{m}" for k in (1, 2) for m in ("none", "paper", "rounds2")}
    for key, cell in res["layout"].items():
        k = int(key.split("|")[0])  # objects per image
        assert cell["n"] == 2, key
        # fractions of the 2 images / 2k objects actually scored (a score outside these grids is a bug)
        assert cell["success"] * cell["n"] == round(cell["success"] * cell["n"]), cell
        assert cell["centroid_in_box"] * k * cell["n"] == round(cell["centroid_in_box"] * k * cell["n"]), cell
        # an image succeeds only when all its objects are in their boxes; an object in its box was detected
        assert cell["success"] <= cell["centroid_in_box"] + 1e-9 <= cell["detected"] + 2e-9, cell
        if k == 1:
            assert cell["success"] == pytest.approx(cell["centroid_in_box"]), cell
        if cell["detected"] == 0:
            assert cell["mean_iou"] == 0, cell
    assert res["reroll"]["region, strength 1.0"]["outside"] < res["reroll"]["global variation, strength 1.0"]["outside"]
    assert res["cost"]["layout_ratio"] > 0
    assert (tmp_path / "b.json").exists()
