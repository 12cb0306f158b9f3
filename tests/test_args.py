"""Script args and X/Y/Z axes -> one spec (lib_initedit/webui/args.py): one path, dict -> edit -> parse_spec."""
import json
import types

import pytest

from lib_initedit import spec as S
from lib_initedit.spec import SpecError, parse_spec
from lib_initedit.webui import args

TWO = {"reroll": [{"box": [0, 0, 0.5, 1], "seed": 1}, {"box": [0.5, 0, 1, 1], "seed": 2}]}


def xyz(**values):
    return types.SimpleNamespace(**{getattr(args, "XYZ_" + k.upper()): v for k, v in values.items()})


def test_reroll_seed_axis_wraps_like_vary_reroll_and_the_infotext_pastes_back():
    _, spec, _ = args.spec_from_args([TWO], xyz(reroll_seed=S.MAX_SEED))
    assert [r.seed for r in spec.reroll] == [S.MAX_SEED, 0]
    pasted = S.parse_infotext(spec.to_json())  # what paste reads back
    assert pasted.reroll == spec.reroll and pasted.keep == spec.keep
    _, spec, _ = args.spec_from_args([TWO], xyz(reroll_seed=-1))
    assert [r.seed for r in spec.reroll] == [-1, -1]


@pytest.mark.parametrize("value", [S.MAX_SEED + 1, -2, "x"])
def test_reroll_seed_axis_out_of_range_is_refused_naming_the_axis(value):
    with pytest.raises(SpecError, match="X/Y/Z reroll seed"):
        args.spec_from_args([TWO], xyz(reroll_seed=value))


def test_keep_and_guidance_axes_go_into_the_spec():
    layout = {"layout": [{"phrase": "cat", "box": [0, 0, 1, 1]}]}
    _, spec, notes = args.spec_from_args([{**TWO, **layout}], xyz(keep=0.25, guidance=4, rounds=2))
    assert (spec.keep, spec.guidance, spec.rounds) == (0.25, 4.0, 2) and not notes
    with pytest.raises(SpecError, match="X/Y/Z keep the rest: keep: 1.5 is outside 0..1"):
        args.spec_from_args([TWO], xyz(keep=1.5))
    with pytest.raises(SpecError, match="layout guidance.*guidance: 120.0 is outside 0..99"):
        args.spec_from_args([layout], xyz(guidance=120))
    _, spec, notes = args.spec_from_args([layout], xyz(keep=0.5))
    assert spec.keep == S.InitEditSpec().keep and "no reroll region" in notes[0]
    _, spec, notes = args.spec_from_args([TWO], xyz(guidance=2))
    assert spec.guidance == S.InitEditSpec().guidance and "no layout box" in notes[0]


def test_one_parse_for_all_axes(monkeypatch):
    calls = []
    real = args.parse_spec
    monkeypatch.setattr(args, "parse_spec", lambda v: calls.append(v) or real(v))
    args.spec_from_args([TWO], xyz(reroll_seed=5, reroll_strength=0.5, keep=0.1))
    assert len(calls) == 2  # the given spec, then the edited dict once


@pytest.mark.parametrize("bad,message", [
    ([[1, 2]], "args[0]: must be true/false"),
    ([5], "args[0]: must be true/false"),
    ([1.5, "{}"], "args[0]: must be true/false"),
    ([True, [1]], "args[1]: must be a spec object"),
    ([True, 7], "args[1]: must be a spec object"),
    ([True, "{}", "extra"], "args: 3 values; InitEdit takes at most 2"),
    ([{"reroll": []}, True], "args: a spec object in first place must be alone"),
    ({"reroll": []}, "args: must be a list"),
    ("{}", "args: must be a list"),
])
def test_args_that_would_be_a_silent_no_op_are_refused(bad, message):
    with pytest.raises(SpecError) as e:
        args.spec_from_args(bad)
    assert message in str(e.value)


def test_spec_facts_agree_with_the_parser():
    """The facts the browser gets (rendered from spec.py) are what parse_spec accepts and refuses."""
    facts = args.spec_facts()
    json.dumps(facts)  # travels as JSON
    region = {"box": [0, 0, 1, 1]}
    for f in facts["fields"]:
        base = {"reroll": [region], "layout": [{"phrase": "a", "box": [0, 0, 1, 1]}]}
        assert getattr(parse_spec(base), f["name"]) == f["default"]
        if f["type"] in ("int", "float"):
            for v in (f["min"], f["max"]):
                assert getattr(parse_spec({**base, f["name"]: v}), f["name"]) == v
            for v in (f["min"] - 1, f["max"] + 1):
                with pytest.raises(SpecError, match=f["name"]):
                    parse_spec({**base, f["name"]: v})
        if f["type"] == "choice":
            for v in f["choices"]:
                parse_spec({f["name"]: v})
    for name, lim in facts["region"].items():
        assert getattr(parse_spec({"reroll": [region]}).reroll[0], name) == lim["default"]
        for v in (lim["min"], lim["max"]):
            parse_spec({"reroll": [{**region, name: v}]})
        for v in (lim["min"] - 1, lim["max"] + 1):
            with pytest.raises(SpecError, match=f"reroll\\[0\\].{name}"):
                parse_spec({"reroll": [{**region, name: v}]})
    lists = {"reroll": [region], "layout": [{"phrase": "a", "box": [0, 0, 1, 1]}]}
    for key, sections in facts["pinned"].items():  # written with each of its lists alone, not with the others
        assert sections and set(sections) <= set(lists)
        for section in lists:
            d = parse_spec({section: lists[section]}).to_dict()
            assert (key in d) == (section in sections), (key, section)


# ---------------------------------------------------------------------------- the API's refusal (webui/api.py)
def _asgi(body: bytes, credentials=None, headers=()):
    """Run the refusal wrapper around a fake route that reads the whole body; (response messages, body seen)."""
    import asyncio
    import concurrent.futures

    from lib_initedit.webui import api

    chunks = [body[:7], body[7:]]
    incoming = [{"type": "http.request", "body": c, "more_body": i == 0} for i, c in enumerate(chunks)]
    sent, seen = [], []

    async def route(scope, receive, send):
        data = b""
        while True:
            m = await receive()
            data += m.get("body", b"")
            if not m.get("more_body"):
                break
        seen.append(data)
        await send({"type": "http.response.start", "status": 200, "headers": []})

    async def receive():
        return incoming.pop(0)

    async def send(m):
        sent.append(m)

    app = api.refusing(route, credentials)
    # a thread of its own: other tests (playwright's sync API) may leave an event loop running in this one
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, app({"type": "http", "headers": list(headers)}, receive, send)).result()
    return sent, seen


BAD_BODY = json.dumps({"prompt": "x", "alwayson_scripts": {"initedit": {"args": [{"vary": "both"}]}}}).encode()


def test_api_refuses_before_the_route_and_replays_good_bodies_unchanged():
    sent, seen = _asgi(BAD_BODY)
    assert sent[0]["status"] == 422 and not seen
    assert json.loads(sent[1]["body"]) == {"detail": 'vary: "both" is not one of seed, reroll'}
    good = json.dumps({"prompt": "x", "alwayson_scripts": {"InitEdit": {"args": [{"rounds": 2}]}}}).encode()
    sent, seen = _asgi(good)
    assert sent[0]["status"] == 200 and seen == [good]
    for other in (b"not json", b"[1]", json.dumps({"alwayson_scripts": {"Other": {"args": [5]}}}).encode()):
        assert _asgi(other)[1] == [other]  # not ours to judge: the WebUI answers


def test_api_refusal_never_speaks_before_the_webuis_authentication():
    import base64

    from lib_initedit.webui import api

    creds = api.parse_credentials("alice:secret")
    sent, seen = _asgi(BAD_BODY, creds)  # no credentials: the real route (401 there) gets it as it came
    assert seen == [BAD_BODY]
    auth = (b"authorization", b"Basic " + base64.b64encode(b"alice:secret"))
    assert _asgi(BAD_BODY, creds, [auth])[0][0]["status"] == 422
    wrong = (b"authorization", b"Basic " + base64.b64encode(b"alice:nope"))
    assert _asgi(BAD_BODY, creds, [wrong])[1] == [BAD_BODY]


def test_validate_answers_with_the_parsers_message():
    from lib_initedit.webui import api

    assert api.validate({"spec": '{"layout": [{"box": [0, 0, 1, 1]}]}'})["error"].startswith("layout[0].phrase:")
    assert api.validate({"spec": "{}"}) == {"error": None}
    assert api.validate({"spec": {"reroll": [{"box": [0, 0, 1, 1]}]}}) == {"error": None}
    assert api.validate({"spec": "{bad"})["error"].startswith("spec: not valid JSON")


def test_layout_on_a_model_without_unet_cross_attention_is_refused_naming_layout_and_the_family(monkeypatch):
    """The host says why layout cannot run on the loaded model (per feature): the API answers 422 naming
    ``layout`` and the family, the validate route (the accordion) says it too; a reroll on that model, a request
    that switches the model, and a loaded UNet model pass."""
    from lib_initedit.webui import api

    reason = {"now": "Anima is not an SD1/SD2/SDXL UNet model: no UNet cross-attention (layout and guidance need one)"}
    monkeypatch.setattr(api, "layout_check", lambda: reason["now"])
    layout = {"layout": [{"phrase": "cat", "box": [0, 0, 0.5, 1]}]}
    body = json.dumps({"prompt": "a cat", "alwayson_scripts": {"InitEdit": {"args": [layout]}}}).encode()
    sent, seen = _asgi(body)
    assert sent[0]["status"] == 422 and not seen
    detail = json.loads(sent[1]["body"])["detail"]
    assert detail.startswith("layout: Anima is not an SD1/SD2/SDXL UNet model") and "reroll" in detail
    assert api.validate({"spec": layout})["error"] == detail
    reroll = json.dumps({"alwayson_scripts": {"InitEdit": {"args": [{"reroll": [{"box": [0, 0, 1, 1]}]}]}}}).encode()
    assert _asgi(reroll)[1] == [reroll]
    switching = json.loads(body)
    switching["override_settings"] = {"sd_model_checkpoint": "tiny-sd15"}
    switching = json.dumps(switching).encode()
    assert _asgi(switching)[1] == [switching]
    assert _asgi(json.dumps({"alwayson_scripts": {"InitEdit": {"args": [False, json.dumps(layout)]}}}).encode())[1]
    reason["now"] = None  # an SD1/SD2/SDXL model loaded
    assert _asgi(body)[1] == [body] and api.validate({"spec": layout}) == {"error": None}


def test_keep_band_axis_goes_into_the_spec_and_is_refused_naming_the_axis():
    _, spec, notes = args.spec_from_args([TWO], xyz(keep_band=0.05, keep=1))
    assert (spec.keep_band, spec.keep) == (0.05, 1.0) and not notes
    hi = S.LIMITS["keep_band"][1]
    with pytest.raises(SpecError, match=f"X/Y/Z keep band: keep_band: 0.5 is outside 0..{hi:g}"):
        args.spec_from_args([TWO], xyz(keep_band=0.5))
    _, spec, notes = args.spec_from_args([{"layout": [{"phrase": "cat", "box": [0, 0, 1, 1]}]}], xyz(keep_band=0.2))
    assert spec.keep_band == S.InitEditSpec().keep_band and "no reroll region" in notes[0]
