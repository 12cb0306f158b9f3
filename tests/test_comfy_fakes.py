"""The ComfyUI host and nodes on stand-ins for ``comfy.*`` (no ComfyUI needed): the noise each sampler run is
handed, per-step noise that follows the reroll, keep's blend, the nodes' errors, phrases in ComfyUI's tokens,
and that the patch goes on a clone. The stand-ins implement the documented ComfyUI behaviour (KSampler noise =
``torch.manual_seed(seed)`` then a CPU float32 ``randn`` of the latent's shape); the real thing is tests/comfy."""
import importlib
import json
import sys
import types

import pytest
import torch

from lib_initedit.spec import parse_spec

SIGMAS = torch.tensor([14.6, 7.0, 3.0, 1.0, 0.0])


def _prepare_noise(latent, seed, noise_inds=None):
    generator = torch.manual_seed(seed)
    return torch.randn(latent.size(), dtype=torch.float32, generator=generator, device="cpu")


def _default_noise_sampler(x, seed=None):
    generator = torch.Generator().manual_seed(seed + 1)
    return lambda sigma, sigma_next: torch.randn(x.size(), generator=generator)


class _Brownian:
    def __init__(self, x, sigma_min, sigma_max, seed=None, cpu=False):
        seeds = seed if isinstance(seed, list) else [seed]
        self.gens = [torch.Generator().manual_seed(1000 + s) for s in seeds]
        self.shape = x.shape if len(seeds) == 1 else (1, *x.shape[1:])

    def __call__(self, sigma, sigma_next):
        return torch.cat([torch.randn(self.shape, generator=g) for g in self.gens])


class _KSampler:
    def __init__(self, sampler_function, extra_options={}, inpaint_options={}):
        self.sampler_function, self.extra_options, self.inpaint_options = sampler_function, extra_options, inpaint_options

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, *args, **kwargs):
        return self.sampler_function(model_wrap, noise, sigmas, extra_args=extra_args, callback=callback,
                                     disable=True, **self.extra_options)


def _named(name):
    def f(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
        return noise_sampler
    f.__name__ = name
    return f


@pytest.fixture()
def host(monkeypatch):
    comfy = types.ModuleType("comfy")
    mods = {
        "comfy": comfy,
        "comfy.sample": types.SimpleNamespace(prepare_noise=_prepare_noise),
        "comfy.samplers": types.SimpleNamespace(KSAMPLER=_KSampler, calc_cond_batch=None),
        "comfy.patcher_extension": types.SimpleNamespace(WrappersMP=types.SimpleNamespace(
            OUTER_SAMPLE="outer_sample", SAMPLER_SAMPLE="sampler_sample", PREDICT_NOISE="predict_noise")),
        "comfy.k_diffusion": types.ModuleType("comfy.k_diffusion"),
        "comfy.k_diffusion.sampling": types.SimpleNamespace(default_noise_sampler=_default_noise_sampler,
                                                            BrownianTreeNoiseSampler=_Brownian),
    }
    for name, module in mods.items():
        monkeypatch.setitem(sys.modules, name, module)
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(mods[parent], child, module)
    for name in ("lib_initedit.comfy.host", "lib_initedit.comfy.nodes"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    module = importlib.import_module("lib_initedit.comfy.host")
    yield module
    for name in ("lib_initedit.comfy.host", "lib_initedit.comfy.nodes"):
        sys.modules.pop(name, None)


class Recorder:
    """A stand-in for ComfyUI's OUTER_SAMPLE executor: records each sampling it is asked to run."""

    def __init__(self, during=None):
        self.calls = []
        self.during = during

    def __call__(self, noise, latent, sampler, sigmas, *rest, **kw):
        self.calls.append((noise.clone(), sampler))
        if self.during is not None:
            self.during(noise)
        return noise


def spec(**kw):
    return parse_spec(json.dumps(kw))


def test_whole_image_reroll_at_strength_1_hands_the_sampler_seed_r_noise(host):
    patch = host.InitEditPatch(spec(reroll=[{"box": [0, 0, 1, 1], "seed": 7, "strength": 1}], keep=0))
    latent = torch.zeros(2, 4, 8, 8)
    run = Recorder()
    sampler = _KSampler(_named("sample_euler"))
    patch.outer_sample(run, _prepare_noise(latent, 1), latent, sampler, SIGMAS, None, None, False, 1)
    (noise, used), = run.calls
    assert noise.equal(_prepare_noise(latent, 7))  # the batch's rows of seed 7, as KSampler draws them
    assert used is sampler  # deterministic sampler: nothing to follow


def test_a_box_changes_the_noise_inside_only(host):
    patch = host.InitEditPatch(spec(reroll=[{"box": [0.25, 0.5, 0.75, 1.0], "seed": 9, "strength": 1}], keep=0))
    latent = torch.zeros(1, 4, 8, 8)
    base = _prepare_noise(latent, 1)
    run = Recorder()
    patch.outer_sample(run, base, latent, _KSampler(_named("sample_euler")), SIGMAS, None, None, False, 1)
    noise = run.calls[0][0]
    inside = torch.zeros(8, 8, dtype=torch.bool)
    inside[4:, 2:6] = True
    assert noise[:, :, ~inside].equal(base[:, :, ~inside])
    assert noise[:, :, inside].equal(_prepare_noise(latent, 9)[:, :, inside])


@pytest.mark.parametrize("name,kind", [("sample_euler_ancestral", "default"), ("sample_dpmpp_sde", "brownian"),
                                       ("sample_dpmpp_2m_sde_gpu", "brownian")])
def test_per_step_noise_of_a_whole_region_is_the_region_seeds_own(host, name, kind):
    patch = host.InitEditPatch(spec(reroll=[{"box": [0, 0, 1, 1], "seed": 5, "strength": 1}], keep=0))
    latent = torch.zeros(1, 4, 8, 8)
    run = Recorder()
    patch.outer_sample(run, _prepare_noise(latent, 1), latent, _KSampler(_named(name)), SIGMAS, None, None, False, 1)
    stand_in = run.calls[0][1]
    x = torch.randn(1, 4, 8, 8)
    following = stand_in.sample(None, SIGMAS, {"seed": 1}, None, x)  # the fake sampler returns its noise_sampler
    own = host.make_noise_sampler(kind, True, x, SIGMAS, 5)
    for _ in range(3):
        assert following(1.0, 0.5).equal(own(1.0, 0.5))


def test_unknown_stochastic_sampler_is_named_once_and_left_alone(host, caplog):
    patch = host.InitEditPatch(spec(reroll=[{"box": [0, 0, 1, 1], "seed": 5}], keep=0))
    latent = torch.zeros(1, 4, 8, 8)
    run = Recorder()
    sampler = _KSampler(_named("sample_ddpm"))
    with caplog.at_level("WARNING"):
        patch.outer_sample(run, _prepare_noise(latent, 1), latent, sampler, SIGMAS, None, None, False, 1)
    assert run.calls[0][1] is sampler
    assert "sample_ddpm" in caplog.text and "does not follow" in caplog.text


def test_keep_runs_the_base_first_and_blends_its_denoised_outside(host):
    patch = host.InitEditPatch(spec(reroll=[{"box": [0, 0, 0.5, 1], "seed": 3, "strength": 1}], keep=1))
    latent = torch.zeros(1, 4, 8, 8)
    base_noise = _prepare_noise(latent, 1)
    seen = []

    def during(noise):  # two model calls per sampling; the "denoised" is the noise plus the call index
        for i in range(2):
            seen.append(patch.predict_noise(lambda x, t, o, s: x + i, noise, torch.tensor([1.0])))

    run = Recorder(during)
    patch.outer_sample(run, base_noise, latent, _KSampler(_named("sample_euler")), SIGMAS, None, None, False, 1)
    assert len(run.calls) == 2 and run.calls[0][0].equal(base_noise)  # the base, then the reroll
    rerolled = run.calls[1][0]
    for i in range(2):
        out = seen[2 + i]
        assert out[..., 4:].equal(base_noise[..., 4:] + i)  # outside: the base's denoised at that call
        assert out[..., :4].equal(rerolled[..., :4] + i)  # inside: the rerolled run's own
    assert patch._keep is None  # nothing left for the next run


def test_vary_reroll_gives_image_b_the_first_row_of_seed_r_plus_b(host):
    patch = host.InitEditPatch(spec(reroll=[{"box": [0, 0, 1, 1], "seed": 40}], keep=0, vary="reroll"))
    latent = torch.zeros(2, 4, 8, 8)
    run = Recorder()
    patch.outer_sample(run, _prepare_noise(latent, 1), latent, _KSampler(_named("sample_euler")), SIGMAS, None,
                       None, False, 1)
    noise = run.calls[0][0]
    for b in range(2):
        assert noise[b].equal(_prepare_noise(torch.zeros(1, 4, 8, 8), 40 + b)[0])


class FakeModel:
    def __init__(self, options=None):
        self.model_options = options or {"transformer_options": {}}
        self.wrappers = {}

    def clone(self):
        c = FakeModel({**self.model_options})
        c.wrappers = {k: dict(v) for k, v in self.wrappers.items()}
        return c

    def add_wrapper_with_key(self, kind, key, fn):
        self.wrappers.setdefault(kind, {})[key] = fn


def test_the_patch_goes_on_a_clone(host):
    shared = FakeModel()
    patched = host.InitEditPatch(spec(reroll=[{"box": [0, 0, 1, 1]}])).apply(shared)
    assert patched is not shared
    assert set(patched.wrappers) == {"outer_sample", "sampler_sample", "predict_noise"}
    assert shared.wrappers == {} and "initedit" not in shared.model_options


def test_nodes_name_the_bad_field(host):
    nodes = importlib.import_module("lib_initedit.comfy.nodes")
    bad = json.dumps({"reroll": [{"box": [0.5, 0, 0.2, 1]}]})
    assert nodes.RegionReroll.VALIDATE_INPUTS(bad) == \
        "InitEdit spec: reroll[0].box: x1 (0.2) must be greater than x0 (0.5)"
    assert "layout" in nodes.RegionReroll.VALIDATE_INPUTS(json.dumps({"layout": [{"phrase": "a", "box": [0, 0, 1, 1]}]}))
    assert nodes.Layout.VALIDATE_INPUTS("{}") == "InitEdit spec: layout: no box (give boxes with phrases)"
    assert nodes.RegionReroll.VALIDATE_INPUTS(nodes.DEFAULT_REROLL) is True
    assert nodes.Layout.VALIDATE_INPUTS(nodes.DEFAULT_LAYOUT) is True
    with pytest.raises(nodes.InitEditError, match="no region"):
        nodes.RegionReroll().apply(FakeModel(), "{}")
    with pytest.raises(nodes.InitEditError, match="connect the MODEL output of an InitEdit Layout"):
        nodes.Heatmaps().render(FakeModel(), {"samples": torch.zeros(1, 4, 8, 8)})


def test_a_mask_input_is_one_more_region(host):
    nodes = importlib.import_module("lib_initedit.comfy.nodes")
    mask = torch.zeros(1, 64, 64)
    mask[:, :, 32:] = 1.0
    parsed = nodes._reroll_spec('{"keep": 0}', mask, mask_seed=12, mask_strength=0.5, mask_feather=0.0)
    region, = parsed.reroll
    assert (region.seed, region.strength) == (12, 0.5) and region.mask is not None
    from lib_initedit.reroll.noise import region_weight
    weight = region_weight(region, 8, 8)
    assert weight[:, 4:].eq(0.5).all() and weight[:, :4].eq(0).all()
    with pytest.raises(nodes.InitEditError, match=r"reroll\[0\].mask: has no white pixel"):
        nodes._reroll_spec("{}", torch.zeros(1, 64, 64))


class FakeClip:
    """ComfyUI's tokenize shape: {"l": [[(token, weight), ...] x 77 per chunk]}; start 1, end/pad 2."""

    WORDS = {"a": 10, "cat": 11, "and": 12, "red": 13, "car": 14}

    def tokenize(self, text):
        ids = [self.WORDS[w] for w in text.split()]
        chunk = [1] + ids + [2] * (76 - len(ids))
        return {"l": [[(t, 1.0) for t in chunk]]}


def test_phrases_are_found_in_comfyuis_tokens(host):
    assert host.phrase_positions(FakeClip(), "a cat and a red car", ["cat", "red car"]) == [[2], [5, 6]]
    with pytest.raises(host.SpecError, match=r"layout\[1\].phrase: phrase 'car a' is not in the prompt"):
        host.phrase_positions(FakeClip(), "a cat and a red car", ["cat", "car a"])


def _load_pack(name):
    """Load the repository root as ComfyUI's load_custom_node does (a package from its __init__.py)."""
    import importlib.util
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1]
    spec_ = importlib.util.spec_from_file_location(name, root / "__init__.py", submodule_search_locations=[str(root)])
    module = importlib.util.module_from_spec(spec_)
    sys.modules[name] = module
    try:
        spec_.loader.exec_module(module)
    finally:
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            sys.modules.pop(key)
    return module, root


def test_the_root_entry_registers_the_nodes_inside_comfyui(host):
    pack, root = _load_pack("initedit_pack_under_test")
    assert set(pack.NODE_CLASS_MAPPINGS) == {"InitEditRegionReroll", "InitEditLayout", "InitEditHeatmaps"}
    assert set(pack.NODE_DISPLAY_NAME_MAPPINGS) == set(pack.NODE_CLASS_MAPPINGS)
    assert {cls.CATEGORY for cls in pack.NODE_CLASS_MAPPINGS.values()} == {"InitEdit"}
    web = root / pack.WEB_DIRECTORY
    assert sorted(p.name for p in web.glob("*.js")) == ["initedit_boxes.js"]


def test_the_root_entry_is_inert_outside_comfyui(monkeypatch):
    monkeypatch.setitem(sys.modules, "comfy", None)  # ``import comfy...`` raises ImportError, as in a WebUI
    pack, root = _load_pack("initedit_pack_outside")
    assert pack.NODE_CLASS_MAPPINGS == {} and pack.NODE_DISPLAY_NAME_MAPPINGS == {}
    # the WebUI loads scripts/*.py and every .js under javascript/: ComfyUI's frontend code is elsewhere
    assert not any("comfy" in p.name.lower() for p in (root / "javascript").rglob("*.js"))
