"""Specs shared by the unit tests of the spec and the end-to-end tiers: malformed specs with the message each must
get (``BAD``: the parser names the field; the WebUI's API answers 422 with it)."""
import base64
import io

from lib_initedit.spec import MAX_BOXES, MAX_REGIONS


def png_b64(size=(8, 8), color=255):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", size, color).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


BAD = [
    ("[1, 2]", "spec: must be an object"),
    ("{not json", "spec: not valid JSON"),
    ({"foo": 1}, "spec: unknown key(s) foo"),
    ({"reroll": {"box": [0, 0, 1, 1]}}, "reroll: must be a list"),
    ({"reroll": [5]}, "reroll[0]: must be an object"),
    ({"reroll": [{"seed": 1}]}, "reroll[0]: give exactly one of 'box' or 'mask'"),
    ({"reroll": [{"box": [0, 0, 1, 1], "mask": png_b64()}]}, "reroll[0]: give exactly one"),
    ({"reroll": [{"box": [0, 0, 1]}]}, "reroll[0].box: must be [x0, y0, x1, y1]"),
    ({"reroll": [{"box": "0,0,1,1"}]}, "reroll[0].box: must be [x0, y0, x1, y1]"),
    ({"reroll": [{"box": [0, 0, 1.5, 1]}]}, "reroll[0].box: x1: 1.5 is outside 0..1"),
    ({"reroll": [{"box": [-0.1, 0, 1, 1]}]}, "reroll[0].box: x0: -0.1 is outside 0..1"),
    ({"reroll": [{"box": [0.5, 0, 0.5, 1]}]}, "reroll[0].box: x1 (0.5) must be greater than x0 (0.5)"),
    ({"reroll": [{"box": [0, 0.7, 1, 0.2]}]}, "reroll[0].box: y1 (0.2) must be greater than y0 (0.7)"),
    ({"reroll": [{"box": [0, 0, "1", 1]}]}, "reroll[0].box: x1: must be a number"),
    ({"reroll": [{"box": [0, 0, float("nan"), 1]}]}, "reroll[0].box: x1: NaN is outside 0..1"),
    ({"reroll": [{"box": [0, 0, 1, 1], "seed": "12"}]}, "reroll[0].seed: must be a whole number"),
    ({"reroll": [{"box": [0, 0, 1, 1], "seed": 1.5}]}, "reroll[0].seed: must be a whole number"),
    ({"reroll": [{"box": [0, 0, 1, 1], "seed": -2}]}, "reroll[0].seed: -2 is outside -1..4294967295"),
    ({"reroll": [{"box": [0, 0, 1, 1], "seed": 2**40}]}, "reroll[0].seed: 1099511627776 is outside"),
    ({"reroll": [{"box": [0, 0, 1, 1], "seed": True}]}, "reroll[0].seed: must be a whole number"),
    ({"reroll": [{"box": [0, 0, 1, 1], "strength": 1.2}]}, "reroll[0].strength: 1.2 is outside 0..1"),
    ({"reroll": [{"box": [0, 0, 1, 1], "feather": 0.6}]}, "reroll[0].feather: 0.6 is outside 0..0.5"),
    ({"reroll": [{"box": [0, 0, 1, 1], "size": 3}]}, "reroll[0]: unknown key(s) size"),
    ({"reroll": [{"mask": 12}]}, "reroll[0].mask: must be a base64 PNG text"),
    ({"reroll": [{"mask": "!!!not base64"}]}, "reroll[0].mask: not valid base64"),
    ({"reroll": [{"mask": base64.b64encode(b"GIF89a....").decode()}]}, "reroll[0].mask: not a PNG image"),
    ({"vary": "both"}, 'vary: "both" is not one of seed, reroll'),
    ({"layout": [{"box": [0, 0, 1, 1]}]}, "layout[0].phrase: must be a non-empty text"),
    ({"layout": [{"phrase": "  ", "box": [0, 0, 1, 1]}]}, "layout[0].phrase: must be a non-empty text"),
    ({"layout": [{"phrase": "cat"}]}, "layout[0].box: missing"),
    ({"layout": [{"phrase": "cat", "box": [0, 0, 1, 1]}, {"phrase": "dog", "box": [0.5, 0, 0.2, 1]}]},
     "layout[1].box: x1 (0.2) must be greater than x0 (0.5)"),
    ({"layout": [{"phrase": "cat", "box": [0, 0, 1, 1], "weight": 2}]}, "layout[0]: unknown key(s) weight"),
    ({"rounds": 0}, "rounds: 0 is outside 1..8"),
    ({"rounds": "2"}, "rounds: must be a whole number"),
    ({"hires": "yes"}, "hires: must be true or false"),
    ({"method": "shuffle"}, 'method: "shuffle" is not one of swap, rebuild'),
    ({"layers": "all"}, 'layers: "all" is not one of paper, level'),
    ({"heatmaps": 1}, "heatmaps: must be true or false"),
    ({"keep": 1.5}, "keep: 1.5 is outside 0..1"),
    ({"keep_band": -0.1}, "keep_band: -0.1 is outside 0..0.25"),
    ({"guidance": -1}, "guidance: -1 is outside 0..99"),
    ({"guidance": 30, "guidance_units": "logits"}, "guidance: 30 is outside 0..20"),
    ({"guidance_units": "px"}, "guidance_units: \"px\" is not one of share, logits"),
    ({"guidance_steps": "all"}, "guidance_steps: must be a number"),
    ({"candidates": 9}, "candidates: 9 is outside 1..8"),
    ({"guidance_core": 0}, "guidance_core: 0 is outside 0.1..1"),
    ({"candidates": 1.5}, "candidates: must be a whole number"),
    ({"reroll": [{"box": [0, 0, 1, 1]}] * (MAX_REGIONS + 1)}, f"reroll: {MAX_REGIONS + 1} items; at most {MAX_REGIONS}"),
    ({"layout": [{"phrase": "cat", "box": [0, 0, 1, 1]}] * (MAX_BOXES + 1)}, f"layout: {MAX_BOXES + 1} boxes; at most"),
    ({"reroll": [{"mask": png_b64(color=0)}]}, "reroll[0].mask: has no white pixel"),
    ({"reroll": [{"mask": png_b64(size=(5000, 4000), color=255)}]}, "reroll[0].mask: 5000x4000 pixels; at most"),
]
