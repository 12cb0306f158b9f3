"""The API says no: a malformed InitEdit entry in ``alwayson_scripts`` is refused with HTTP 422 naming the field,
before any sampling; the server stays healthy and the next plain image is pixel-identical to one made before.

Every malformed spec of tests/spec_cases.py's BAD list, plus malformed argument shapes that must not pass silently
(a spec that is a list or a number, extra positional args), sent to a real WebUI (tests/webui/conftest.py).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.spec_cases import BAD
from tests.webui.helpers import pixels, xyz_args

PLAIN = {"prompt": "a cat and a red car", "negative_prompt": "", "sampler_name": "Euler", "width": 64, "height": 64,
         "steps": 4, "seed": 1, "cfg_scale": 7, "batch_size": 1, "n_iter": 1, "send_images": True, "save_images": False}
BOX = {"box": [0, 0, 1, 1]}

# (alwayson_scripts entry, what the message must contain)
SHAPES = [
    ({"args": [[1, 2]]}, "args[0]: must be true/false"),
    ({"args": [5]}, "args[0]: must be true/false"),
    ({"args": [0.5, "{}"]}, "args[0]: must be true/false"),
    ({"args": [True, [1]]}, "args[1]: must be a spec object"),
    ({"args": [True, 42]}, "args[1]: must be a spec object"),
    ({"args": [True, "{}", "extra"]}, "args: 3 values; InitEdit takes at most 2"),
    ({"args": [True, {"reroll": [BOX]}, 1, 2]}, "args: 4 values"),
    ({"args": [{"reroll": [BOX]}, True]}, "args: a spec object in first place must be alone"),
    ({"args": {"reroll": [BOX]}}, "args: must be a list"),
    ({"args": "{}"}, "args: must be a list"),
    ([True, "{}"], "alwayson_scripts.InitEdit: must be an object"),
    ({"args": [True, "{\"reroll\": [{\"box\": [0, 0, 1, 1], \"seed\": -7}]}"]}, "reroll[0].seed: -7 is outside"),
]


def _cases():
    for value, message in BAD:
        yield {"args": [value] if not isinstance(value, str) else [True, value]}, message.split(":")[0], message
    for entry, message in SHAPES:
        yield entry, message.split(":")[0], message


CASES = list(_cases())


@pytest.fixture(scope="module")
def before(webui):
    status, js = webui.request("POST", "/sdapi/v1/txt2img", PLAIN)
    assert status == 200, js
    return pixels(js)


def test_there_are_enough_cases():
    assert len(CASES) >= 40


@pytest.mark.parametrize("entry,field,message", CASES, ids=[c[2][:60] for c in CASES])
def test_malformed_initedit_is_a_422_naming_the_field(webui, before, entry, field, message):
    status, js = webui.request("POST", "/sdapi/v1/txt2img", {**PLAIN, "alwayson_scripts": {"InitEdit": entry}}, timeout=60)
    assert status == 422, (status, str(js)[:300])
    assert isinstance(js, dict) and isinstance(js.get("detail"), str), js
    assert js["detail"].startswith(field) and message in js["detail"], js["detail"]


@pytest.mark.parametrize("key", ["initedit", "INITEDIT", "InitEdit"])
def test_the_script_name_matches_case_insensitively_as_the_webui_does(webui, before, key):
    status, js = webui.request("POST", "/sdapi/v1/txt2img",
                               {**PLAIN, "alwayson_scripts": {key: {"args": [{"vary": "both"}]}}}, timeout=60)
    assert status == 422 and js["detail"].startswith("vary:"), js


def test_img2img_refuses_a_malformed_entry_too(webui, before):
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (90, 120, 200)).save(buf, format="PNG")
    body = {**PLAIN, "init_images": [base64.b64encode(buf.getvalue()).decode()], "denoising_strength": 0.5,
            "alwayson_scripts": {"InitEdit": {"args": [{"rounds": 0}]}}}
    status, js = webui.request("POST", "/sdapi/v1/img2img", body, timeout=60)
    assert status == 422 and js["detail"].startswith("rounds:"), js


def test_validate_route_answers_with_the_parsers_message(webui):
    status, js = webui.request("POST", "/initedit/v1/validate", {"spec": json.dumps({"layout": [{"box": [0, 0, 1, 1]}]})})
    assert status == 200 and js["error"].startswith("layout[0].phrase:"), js
    status, js = webui.request("POST", "/initedit/v1/validate", {"spec": json.dumps({"reroll": [BOX]})})
    assert status == 200 and js == {"error": None}


def test_valid_requests_still_pass_and_the_server_is_healthy_after(webui, before):
    """After all the refusals: the next plain image is pixel-identical to the one made before them, and a valid
    InitEdit request (the same key spellings) is served."""
    status, js = webui.request("POST", "/sdapi/v1/txt2img", PLAIN)
    assert status == 200 and np.array_equal(pixels(js), before)
    status, js = webui.request("POST", "/sdapi/v1/txt2img",
                               {**PLAIN, "alwayson_scripts": {"initedit": {"args": [{"reroll": [{**BOX, "seed": 5}]}]}}})
    assert status == 200 and "InitEdit:" in json.loads(js["info"])["infotexts"][0]
    status, js = webui.request("POST", "/sdapi/v1/txt2img", {**PLAIN, "alwayson_scripts": {"InitEdit": {"args": [False, "{bad"]}}})
    assert status == 200 and np.array_equal(pixels(js), before)  # disabled: the text is not read, as in the UI


def _xyz(webui, label, values, spec):
    args = xyz_args(webui, label, values)
    status, js = webui.request("POST", "/sdapi/v1/txt2img", {**PLAIN, "script_name": "x/y/z plot", "script_args": args,
                                                            "alwayson_scripts": {"InitEdit": {"args": [spec]}}})
    assert status == 200, js
    return [t for t in json.loads(js["info"])["infotexts"] if "Steps:" in t]


def _initedit(infotext, key="InitEdit"):
    start = infotext.index(f"{key}: ") + len(key) + 2
    value, _ = json.JSONDecoder().raw_decode(infotext[start:])
    return value


def test_xyz_axes_go_through_the_one_parse(webui):
    """The X/Y/Z axes write into the spec's dict and parse it once: the reroll seed axis wraps modulo SEED_SPAN
    (4294967295 with two regions gives 4294967295 and 0, which paste reads back), Keep the rest and Layout
    guidance are axes, and a bad axis value is named in the image's infotext (the UI path goes on without)."""
    from lib_initedit.spec import MAX_SEED, parse_infotext

    status, scripts = webui.get("/sdapi/v1/script-info")
    choices = next(s for s in scripts if s["name"] == "x/y/z plot" and not s["is_img2img"])["args"][0]["choices"]
    for label in ("[InitEdit] Keep the rest", "[InitEdit] Layout guidance"):
        assert label in choices
    two = {"reroll": [{"box": [0, 0, 0.5, 1], "seed": 1}, {"box": [0.5, 0, 1, 1], "seed": 2}]}
    texts = _xyz(webui, "[InitEdit] Reroll seed", str(MAX_SEED), two)
    spec = parse_infotext(_initedit(texts[0]))
    assert [r.seed for r in spec.reroll] == [MAX_SEED, 0]
    texts = _xyz(webui, "[InitEdit] Keep the rest", "0.25, 1.5", two)
    assert any(parse_infotext(_initedit(t)).keep == 0.25 for t in texts if "InitEdit: " in t)
    assert any("X/Y/Z keep the rest: keep: 1.5 is outside 0..1" in _initedit(t, "InitEdit error") for t in texts
               if "InitEdit error" in t)
