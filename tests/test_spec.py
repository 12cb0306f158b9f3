import base64
import io
import json

import pytest
import torch

from lib_initedit.spec import LEGACY_VALUES, InitEditSpec, LayoutBox, RerollRegion, SpecError, parse_infotext, parse_spec
from tests.spec_cases import BAD, png_b64

FULL = {
    "reroll": [{"box": [0.1, 0.2, 0.5, 0.6], "seed": 1234, "strength": 0.5, "feather": 0.05},
               {"mask": png_b64(), "seed": 7, "strength": 1.0, "feather": 0.0}],
    "vary": "reroll",
    "layout": [{"phrase": "red car", "box": [0.0, 0.0, 0.5, 1.0]}, {"phrase": "cat", "box": [0.5, 0.25, 1.0, 0.75]}],
    "rounds": 2, "hires": True, "method": "rebuild", "layers": "paper", "heatmaps": True,
    "keep": 0.5, "keep_band": 0.05, "guidance": 3.0, "guidance_steps": 0.25, "candidates": 3, "guidance_core": 0.5,
    "guidance_units": "logits", "fraction_of": "calls", "keep_release": "hard", "guidance_layers": "all",
}


def test_round_trip_is_exact():
    spec = parse_spec(FULL)
    assert parse_spec(spec.to_dict()) == spec
    assert parse_spec(spec.to_json()) == spec
    assert spec.to_dict() == FULL


def test_defaults_and_empty():
    assert parse_spec(None) == InitEditSpec()
    assert parse_spec("") == InitEditSpec()
    assert parse_spec("  ").is_empty
    spec = parse_spec({"reroll": [{"box": [0, 0, 1, 1]}]})
    assert spec.reroll == (RerollRegion(box=(0.0, 0.0, 1.0, 1.0), seed=-1, strength=1.0, feather=0.0),)
    assert spec.vary == "seed" and spec.rounds == 1 and not spec.hires
    assert parse_spec(InitEditSpec().to_dict()) == InitEditSpec()


def test_non_default_scalars_survive_without_lists():
    spec = InitEditSpec(vary="reroll", rounds=3)
    assert parse_spec(spec.to_json()) == spec


def test_layout_phrase_is_stripped():
    assert parse_spec({"layout": [{"phrase": "  cat ", "box": [0, 0, 1, 1]}]}).layout == (LayoutBox("cat", (0.0, 0.0, 1.0, 1.0)),)




@pytest.mark.parametrize("value,message", BAD, ids=[m for _, m in BAD])
def test_bad_input_names_the_field(value, message):
    with pytest.raises(SpecError) as err:
        parse_spec(value)
    assert message in str(err.value)


def test_data_url_mask_is_accepted():
    payload = png_b64()
    spec = parse_spec({"reroll": [{"mask": "data:image/png;base64," + payload}]})
    assert spec.reroll[0].mask == payload  # the prefix is dropped, the PNG kept byte for byte
    assert json.loads(spec.to_json())["reroll"][0]["mask"] == payload
    assert spec == parse_spec({"reroll": [{"mask": payload}]})


def test_infotext_without_new_fields_means_their_legacy_values():
    """An infotext written before keep/guidance existed reproduces as it was made, whatever the defaults."""
    old = {"reroll": [{"box": [0, 0, 1, 1], "seed": 3}], "layout": [{"phrase": "cat", "box": [0, 0, 1, 1]}]}
    spec = parse_infotext(json.dumps(old))
    for name, legacy in LEGACY_VALUES.items():
        assert getattr(spec, name) == legacy
    new = parse_spec({**old, "keep": 0.75, "guidance": 2.0})
    assert parse_infotext(new.to_json()) == new  # fields written, never left to a default


def test_an_infotext_with_keep_but_without_keep_band_keeps_the_band_less_keep():
    """Written before the band existed: keep 0.8 meant every element outside the regions follows for 80 % of
    the calls; it reads as band 0, which is exactly that."""
    spec = parse_infotext(json.dumps({"reroll": [{"box": [0, 0, 0.5, 0.5], "seed": 3}], "keep": 0.8}))
    assert (spec.keep, spec.keep_band) == (0.8, 0.0)
    assert parse_spec({"reroll": [{"box": [0, 0, 0.5, 0.5]}]}).keep_band == InitEditSpec().keep_band
    assert parse_spec({"reroll": [{"box": [0, 0, 0.5, 0.5]}]}).to_dict()["keep_band"] == InitEditSpec().keep_band


def test_an_infotext_with_a_band_but_without_keep_release_releases_it_all_or_nothing():
    """Written before keep_release existed (band 0.1, early-smooth, all or nothing): it reads as "hard", which is
    that; a new spec gets today's release."""
    from lib_initedit.reroll.release import RELEASES

    old = {"reroll": [{"box": [0, 0, 0.5, 0.5], "seed": 3}], "keep": 1.0, "keep_band": 0.1}
    assert parse_infotext(json.dumps(old)).keep_release == "hard"
    assert RELEASES["hard"].shape == "early-smooth" and not RELEASES["hard"].soft
    assert parse_spec(old).keep_release == InitEditSpec().keep_release == "soft" and RELEASES["soft"].soft


def test_legacy_fields_are_always_written_with_their_section():
    assert "keep" in parse_spec({"reroll": [{"box": [0, 0, 1, 1]}]}).to_dict()
    assert "guidance" not in parse_spec({"reroll": [{"box": [0, 0, 1, 1]}]}).to_dict()
    assert "guidance" in parse_spec({"layout": [{"phrase": "a", "box": [0, 0, 1, 1]}]}).to_dict()
    assert InitEditSpec().to_dict() == {}
    # fraction_of belongs to both lists: written with either alone
    for only in ({"reroll": [{"box": [0, 0, 1, 1]}]}, {"layout": [{"phrase": "a", "box": [0, 0, 1, 1]}]}):
        assert parse_spec(only).to_dict()["fraction_of"] == "steps"
        assert parse_infotext(only).fraction_of == "calls"  # written before it existed: of the calls


def test_old_infotexts_count_calls_on_every_sampler_and_new_specs_count_steps():
    """keep 0.5 on Heun (10 steps, 19 calls): an old infotext kept floor(0.5 x 19) = 9 calls; a new spec keeps
    5 steps, both calls of each."""
    from lib_initedit.reroll.keep import BaseRecord, KeepBlend
    from lib_initedit.sampling_hooks import Call

    record = BaseRecord([torch.zeros(4, 8, 8)] * 19, True, [float((i + 1) // 2) for i in range(19)])
    region = [[RerollRegion(box=(0, 0, 0.5, 0.5), seed=1)]]
    kept = {}
    for text in ('{"reroll": [{"box": [0, 0, 0.5, 0.5], "seed": 1}], "keep": 0.5, "keep_band": 0}',
                 '{"reroll": [{"box": [0, 0, 0.5, 0.5], "seed": 1}], "keep": 0.5, "keep_band": 0, "fraction_of": "steps"}'):
        spec = parse_infotext(text)
        blend = KeepBlend.from_spec([record], region, (8, 8), spec)
        calls = [Call(i, 20, 10, record.places[i]) for i in range(19)]
        kept[spec.fraction_of] = sum(blend.after_call(c, torch.ones(1, 4, 8, 8)) is not None for c in calls)
    assert kept == {"calls": 9, "steps": 10}


def test_mask_with_only_transparent_white_selects_nothing():
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGBA", (8, 8), (255, 255, 255, 0)).save(buf, format="PNG")
    with pytest.raises(SpecError, match="has no white pixel"):
        parse_spec({"reroll": [{"mask": base64.b64encode(buf.getvalue()).decode()}]})
