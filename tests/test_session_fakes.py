"""The WebUI adapter's session logic (seeds, reroll, layout, keep, infotext, X/Y/Z) on a small stand-in for the
WebUI: unit tests, no ``modules.*`` needed."""
import math
import types

import pytest
import torch

from lib_initedit.reroll.noise_stream import FirstDrawHook, RerollStream
from lib_initedit.spec import parse_spec
from lib_initedit.webui.args import XYZ_REROLL_SEED, XYZ_REROLL_STRENGTH, XYZ_ROUNDS, read_args, spec_from_args
from lib_initedit.webui import settings
from lib_initedit.webui.per_image import spec_for_image
from lib_initedit.webui.session import Session
from lib_initedit.sampling_hooks import Call
from tests.webui_fakes import FakeBrownian, FakeHost, FakeSampler, SeedRNG, make_p, run_sampling


def test_args_shapes():
    assert read_args([]) == (False, None)
    assert read_args([{"reroll": []}]) == (True, {"reroll": []})
    assert read_args([True, '{"rounds": 2}']) == (True, '{"rounds": 2}')
    assert read_args([False, '{"rounds": 2}'])[0] is False
    assert read_args(['{"rounds": 2}']) == (True, '{"rounds": 2}')
    enabled, spec, _ = spec_from_args([False, "{broken"])
    assert not enabled and spec.is_empty  # disabled: the text is not even read


def test_xyz_overrides():
    p = types.SimpleNamespace(**{XYZ_REROLL_SEED: "50", XYZ_REROLL_STRENGTH: 0.25, XYZ_ROUNDS: 3})
    raw = {"reroll": [{"box": [0, 0, 1, 1], "seed": 1}, {"box": [0, 0, 0.5, 1], "seed": 2}],
           "layout": [{"phrase": "cat", "box": [0, 0, 1, 1]}]}
    _, spec, notes = spec_from_args([raw], p)
    assert [r.seed for r in spec.reroll] == [50, 51]
    assert {r.strength for r in spec.reroll} == {0.25} and spec.rounds == 3 and not notes
    _, spec, notes = spec_from_args([{"layout": raw["layout"]}], types.SimpleNamespace(**{XYZ_REROLL_SEED: 5}))
    assert notes and "no reroll region" in notes[0]


def test_xyz_bad_value_names_the_axis():
    from lib_initedit.spec import SpecError

    with pytest.raises(SpecError, match="X/Y/Z reroll strength"):
        spec_from_args([{"reroll": [{"box": [0, 0, 1, 1]}]}], types.SimpleNamespace(**{XYZ_REROLL_STRENGTH: "lots"}))
    with pytest.raises(SpecError, match="strength: 2.0 is outside"):
        spec_from_args([{"reroll": [{"box": [0, 0, 1, 1]}]}], types.SimpleNamespace(**{XYZ_REROLL_STRENGTH: 2.0}))


def test_vary_reroll_keeps_base_seed_and_steps_reroll_seeds():
    p = make_p(batch=2, n_iter=2)
    spec = parse_spec({"reroll": [{"box": [0, 0, 1, 1], "seed": 100}], "vary": "reroll"})
    session = Session.start(p, spec, FakeHost())
    assert p.all_seeds == [10, 10, 10, 10]
    assert [s.reroll[0].seed for s in session.image_specs] == [100, 101, 102, 103]
    assert spec_for_image(spec, 3).reroll[0].seed == 103


def test_random_seed_is_resolved():
    session = Session.start(make_p(), parse_spec({"reroll": [{"box": [0, 0, 1, 1]}]}), FakeHost())
    assert session.spec.reroll[0].seed >= 0
    assert "-1" not in session.image_specs[0].to_json()


def test_whole_reroll_equals_the_seed_stream_first_and_later_draws():
    host = FakeHost()
    p = make_p(batch=2)
    session = Session.start(p, parse_spec({"reroll": [{"box": [0, 0, 1, 1], "seed": 7}]}), host)
    x = p.rng.next()
    new, follow = session.edit_first_noise(x, None, p.rng)
    ref = SeedRNG((4, 32, 32), [7, 7])
    assert torch.equal(new, ref.next())
    assert isinstance(follow, RerollStream)
    assert torch.equal(follow.next(), ref.next())  # ancestral steps follow the reroll seed too
    host.options[settings.FOLLOW_OPTION] = False
    _, follow = session.edit_first_noise(SeedRNG((4, 32, 32), [1, 2]).next(), None, p.rng)
    assert follow is p.rng


def test_partial_reroll_keeps_the_outside_and_unit_variance():
    host = FakeHost()
    p = make_p(batch=1)
    session = Session.start(p, parse_spec({"reroll": [{"box": [0, 0, 0.5, 1], "seed": 3, "strength": 0.6}]}), host)
    x = torch.randn(1, 4, 256, 256, generator=torch.Generator().manual_seed(0))
    new, _ = session.edit_first_noise(x.clone(), None, None)
    assert torch.equal(new[..., 128:], x[..., 128:])
    assert abs(new[..., :128].std().item() - 1) < 0.01


def test_layout_session_edits_and_reports():
    host = FakeHost()
    p = make_p(batch=2)
    spec = parse_spec({"layout": [{"phrase": "cat", "box": [0, 0, 0.5, 1]}, {"phrase": "red car", "box": [0.5, 0, 1, 1]}],
                       "heatmaps": True})
    session = Session.start(p, spec, host)
    x = p.rng.next()
    c = torch.randn(2, 77, 32, generator=torch.Generator().manual_seed(1))
    new, _ = session.edit_first_noise(x.clone(), c, p.rng)
    assert torch.equal(new.flatten(1).sort().values, x.flatten(1).sort().values)  # same values...
    assert not torch.equal(new, x)  # ...moved
    assert len(session.layouts) == 2 and host.textinfo and host.caches_forgotten == 1
    (index, sheet), _ = session.heatmap_images((64, 64))
    assert index == 0 and sheet.size[0] == 128  # before / after: sampling has not run yet
    # the sampler runs with guidance (default 0.5 of the steps): the sheets get the first unguided step
    hooks, cond_rows = p.hooks, [c[0], c[1]]
    hooks.enter()
    try:
        for i in range(4):
            hooks.before_call(Call.plain(i, 4), cond_rows)
            with torch.no_grad():
                host.unet(torch.cat([new, new]), torch.full((4,), 900), context=torch.cat([torch.zeros_like(c), c]))
    finally:
        hooks.leave(True)
    sheets = session.heatmap_images((64, 64))
    assert [i for i, _ in sheets] == [0, 1] and all(sheet.size[0] == 192 for _, sheet in sheets)
    assert session.layouts[0].guide.watched_index == 2


def test_candidate_pooling_fills_boxes_from_the_seeds_derived_noises():
    """candidates 3: every block of the edited noise (one cell of the probe's maps) is a whole block of the image's
    own noise or of its candidate noises (the host's noise of probe.candidate_seed(seed, j)), each used once,
    and some come from a candidate."""
    from lib_initedit.layout import probe
    host = FakeHost()
    p = make_p(batch=1)
    spec = parse_spec({"layout": [{"phrase": "cat", "box": [0, 0, 0.25, 0.25]}], "candidates": 3, "guidance": 0})
    session = Session.start(p, spec, host)
    x = p.rng.next()
    new, _ = session.edit_first_noise(x.clone(), torch.randn(1, 77, 32, generator=torch.Generator().manual_seed(2)),
                                      p.rng)
    sources = [x[0]] + [SeedRNG((4, 32, 32), [probe.candidate_seed(p.all_seeds[0], j)]).next()[0] for j in (1, 2)]
    bs = 32 // session.layouts[0].maps_before.shape[-1]  # latent cells per block at the probe's level
    blocks = lambda t: [t[:, r:r + bs, c:c + bs] for r in range(0, 32, bs) for c in range(0, 32, bs)]  # noqa: E731
    pool = [(j, i) for j, src in enumerate(sources) for i, _ in enumerate(blocks(src))]
    used, from_candidates = set(), 0
    for block in blocks(new[0]):
        match = [(j, i) for j, i in pool if torch.equal(block, blocks(sources[j])[i])]
        assert len(match) == 1 and match[0] not in used, "a block that is not one whole source block, used once"
        used.add(match[0])
        from_candidates += match[0][0] > 0
    assert from_candidates > 0


def test_missing_phrase_is_dropped_noted_and_recorded():
    host = FakeHost()
    p = make_p(batch=1, prompt="a cat on a sofa")
    spec = parse_spec({"layout": [{"phrase": "cat", "box": [0, 0, 0.5, 1]}, {"phrase": "zebra", "box": [0.5, 0, 1, 1]}]})
    session = Session.start(p, spec, host)
    session.edit_first_noise(p.rng.next(), torch.randn(1, 77, 32), p.rng)
    assert [b.phrase for b in session.image_specs[0].layout] == ["cat"]
    assert "zebra" in p.extra_generation_params["InitEdit note"] and p.comments


def test_and_subprompt_with_most_phrases_is_probed():
    host = FakeHost()
    p = make_p(batch=1, prompt="a tree AND a cat and a red car")
    spec = parse_spec({"layout": [{"phrase": "cat", "box": [0, 0, 0.5, 1]}, {"phrase": "red car", "box": [0.5, 0, 1, 1]}]})
    session = Session.start(p, spec, host)
    found = session.locate_phrases(p.prompts[0], [4, 9])
    assert found.row == 9 and len(found.kept) == 2 and not found.missing
    assert session.image_specs[0] == session.spec  # looking up changes nothing


def test_first_draw_hook_edits_once_then_follows():
    base = SeedRNG((4, 8, 8), [1])
    follow = SeedRNG((4, 8, 8), [2])
    hook = FirstDrawHook(base, lambda x: (x * 0, follow))
    assert torch.equal(hook.next(), torch.zeros(1, 4, 8, 8))
    assert torch.equal(hook.next(), SeedRNG((4, 8, 8), [2]).next())
    assert hook.seeds == [1]


def test_infotext_index_is_global():
    from lib_initedit.webui.per_image import infotext_image_index as _image_index

    p = types.SimpleNamespace(prompts=["a", "b"], iteration=1, batch_size=2)
    assert _image_index(4, p=p, index=1, all_prompts=p.prompts) == 3
    assert _image_index(4, p=p, index=1, all_prompts=["a", "b", "c", "d"]) == 1
    # reForge: a cleaned copy of the batch's prompts, but the batch's own seed list
    p.seeds = [11, 12]
    assert _image_index(4, p=p, index=1, all_prompts=["a", "b"], all_seeds=p.seeds) == 3
    assert _image_index(4, p=p, index=1, all_prompts=["a", "b", "c", "d"], all_seeds=[10, 11, 12, 13]) == 1


def test_sde_noise_follows_the_reroll_seed_and_the_patch_is_undone():
    host = FakeHost()
    p = make_p(batch=2)
    p.sampler = FakeSampler()
    session = Session.start(p, parse_spec({"reroll": [{"box": [0, 0, 0.5, 1], "seed": 7}]}), host)
    session.edit_first_noise(p.rng.next(), None, p.rng)
    assert "create_noise_sampler" in vars(p.sampler)
    x = torch.zeros(2, 4, 32, 32)
    sampler = p.sampler.create_noise_sampler(x, torch.tensor([14.6, 1.0, 0.0]), p)
    assert "create_noise_sampler" not in vars(p.sampler)  # gone after its one use
    draw = sampler(14.6, 1.0)
    region = FakeBrownian((4, 32, 32), [7, 7])(14.6, 1.0)
    base = FakeBrownian((4, 32, 32), p.all_seeds)(14.6, 1.0)
    assert torch.equal(draw[..., :16], region[..., :16])  # inside: the reroll seed's Brownian noise
    assert torch.equal(draw[..., 16:], base[..., 16:])  # outside: the image's own
    session.close()


def test_sde_patch_is_undone_by_close_when_never_used_and_not_made_without_follow():
    host = FakeHost()
    p = make_p(batch=1)
    p.sampler = FakeSampler()
    session = Session.start(p, parse_spec({"reroll": [{"box": [0, 0, 0.5, 1], "seed": 7}]}), host)
    session.edit_first_noise(p.rng.next(), None, p.rng)
    session.close()
    assert "create_noise_sampler" not in vars(p.sampler)
    host.options[settings.FOLLOW_OPTION] = False
    session.edit_first_noise(p.rng.next(), None, p.rng)
    assert "create_noise_sampler" not in vars(p.sampler)


def test_keep_generates_the_base_on_a_miss_remembers_it_and_reuses_it():
    from lib_initedit.reroll.keep import BaseCache

    host, cache = FakeHost(), BaseCache(2**20)
    spec = parse_spec({"reroll": [{"box": [0, 0, 0.5, 1], "seed": 7}], "keep": 1.0})
    p = make_p(batch=1)
    x = p.rng.next()
    session = Session.start(p, spec, host, cache=cache)
    new, _ = session.edit_first_noise(x.clone(), None, p.rng, uc="uc")
    assert host.bases_sampled == 1 and len(cache) == 1
    steps = run_sampling(p.hooks, new)
    beyond = 16 + math.ceil(spec.keep_band * min(x.shape[-2:]))  # the band's outer edge
    for i, d in enumerate(steps):  # outside the region: the base's prediction (x_pre * (i+1)); inside: free
        assert torch.equal(d[..., beyond:], (x * (i + 1))[..., beyond:])
        # in the band a blend of the two, which agree here (the reroll changes only the region's noise)
        assert torch.allclose(d[..., 16:], (x * (i + 1))[..., 16:], atol=1e-5)
        assert torch.equal(d[..., :16], (new * (i + 1))[..., :16])
    again = Session.start(make_p(batch=1), spec, host, cache=cache)
    again.edit_first_noise(x.clone(), None, p.rng, uc="uc")
    assert host.bases_sampled == 1  # a hit: nothing generated twice


def test_a_plain_batch_is_recorded_and_keep_0_records_nothing_new():
    from lib_initedit.reroll.keep import BaseCache

    host, cache = FakeHost(), BaseCache(2**20)
    p = make_p(batch=2)
    session = Session.start(p, parse_spec({"layout": [{"phrase": "cat", "box": [0, 0, 0.5, 1]}]}), host, cache=cache)
    session.edit_first_noise(p.rng.next(), torch.randn(2, 77, 32), p.rng, uc="uc")
    run_sampling(p.hooks, torch.zeros(2, 4, 32, 32))
    assert len(cache) == 2  # one record per image, keyed by its own noise
    p2 = make_p(batch=1)
    rerolled = Session.start(p2, parse_spec({"reroll": [{"box": [0, 0, 0.5, 1], "seed": 7}], "keep": 0.0}), host,
                             cache=cache)
    rerolled.edit_first_noise(p2.rng.next(), None, p2.rng, uc="uc")
    assert not hasattr(p2, "hooks") and host.bases_sampled == 0 and len(cache) == 2


def test_hires_noise_is_edited_once_however_often_the_host_asks():
    """Forge calls process_before_every_sampling twice in the hires pass with the same noise tensor."""
    host = FakeHost()
    p = make_p(batch=1)
    session = Session.start(p, parse_spec({"reroll": [{"box": [0, 0, 0.5, 1], "seed": 7, "strength": 0.5}],
                                           "hires": True}), host)
    noise = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(3))
    session.edit_hires_noise(noise)
    once = noise.clone()
    session.edit_hires_noise(noise)
    assert torch.equal(noise, once)
    other = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(3))
    session.edit_hires_noise(other)  # a new tensor (the next batch's) is edited
    assert torch.equal(other, once)


def test_a_reroll_finds_the_base_a_plain_generation_recorded():
    """The keys a plain generation records under are the keys a reroll of it looks up (whatever keep is)."""
    from lib_initedit.spec import InitEditSpec
    from lib_initedit.webui.session import base_extra

    for keep in (0.0, 0.6, 1.0):
        spec = parse_spec({"reroll": [{"box": [0, 0, 0.5, 1], "seed": 7}], "keep": keep, "vary": "reroll",
                           "hires": True, "heatmaps": True})
        assert base_extra(spec) == base_extra(InitEditSpec())
    layout = parse_spec({"layout": [{"phrase": "cat", "box": [0, 0, 0.5, 1]}], "guidance": 3.0})
    assert base_extra(layout.replace(reroll=spec.reroll, keep=0.3)) == base_extra(layout) != base_extra(InitEditSpec())


def test_per_image_infotext_is_callable_per_image_and_plain_json_text():
    """A1111 calls the value per image; Forge Classic's Processed.js json-dumps it without default=."""
    import json

    from lib_initedit.webui.per_image import PerImageInfotext
    value = PerImageInfotext('{"rounds":2}', lambda index=0, **kw: f'{{"image":{index}}}')
    assert callable(value) and value(index=3) == '{"image":3}'
    assert json.loads(json.dumps({"InitEdit": value})) == {"InitEdit": '{"rounds":2}'}
    assert value == '{"rounds":2}' and isinstance(value, str)
