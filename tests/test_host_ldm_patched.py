"""The ``ldm_patched`` host (``lib_initedit/webui/hosts/ldm_patched.py``: reForge, Forge Classic) and its selection
(``webui/hosts/__init__.py``) against fakes of their ``modules`` / ``ldm_patched`` / ``modules_forge`` (no WebUI needed).
The real thing: ``tests/webui/test_reforge.py``."""
from __future__ import annotations

import copy
import importlib
import math
import sys
import types

import pytest
import torch

from lib_initedit.layout import probe
from tests.ldm_like import UNetModel

# --------------------------------------------------------------------------------------------- fakes


class FakeImageRNG:
    def __init__(self, shape, seeds, subseeds=None, subseed_strength=0.0, seed_resize_from_h=0, seed_resize_from_w=0):
        self.shape, self.seeds = tuple(shape), list(seeds)
        self.kwargs = dict(subseeds=subseeds, subseed_strength=subseed_strength)


class Multicond:
    def __init__(self, conds_list, tensor):
        self.conds_list, self.tensor = conds_list, tensor


def reconstruct_multicond_batch(c, step):
    return c.conds_list, c.tensor


class Cond:  # ldm_patched.modules.conds.CONDRegular / CONDCrossAttn: hold the tensor
    def __init__(self, cond):
        self.cond = cond


ALPHAS = torch.linspace(0.9991, 0.0047, 1000)  # alphas_cumprod-like, decreasing


class ModelSampling:
    def calculate_input(self, sigma, x):
        return x / (sigma.reshape(-1, 1, 1, 1) ** 2 + 1) ** 0.5


class BaseModel:
    """Like ldm_patched.modules.model_base.BaseModel: apply_model takes sigma, applies c_in itself."""

    def __init__(self, unet, kind="EPS"):
        self.diffusion_model = unet
        self.model_sampling = ModelSampling()
        self.model_type = types.SimpleNamespace(name=kind)
        self.calls = []

    def apply_model(self, x, t, c_crossattn=None, c_concat=None, transformer_options=None, **kwargs):
        self.calls.append(dict(x=x, t=t, context=c_crossattn, c_concat=c_concat, transformer_options=transformer_options))
        return self.diffusion_model(self.model_sampling.calculate_input(t, x), t, context=c_crossattn)


class Patcher:
    def __init__(self, model, model_options):
        self.model, self.model_options = model, model_options
        self.clones = []
        self.extra_concat_condition = None

    def clone(self):  # ldm_patched ModelPatcher.clone: same model, options deep-copied
        clone = Patcher(self.model, copy.deepcopy(self.model_options))
        self.clones.append(clone)
        return clone


class Chunk:
    def __init__(self, tokens):
        self.tokens = tokens


class Embedder:
    """A1111's FrozenCLIPEmbedderWithCustomWords surface (reForge keeps it, ldm_patched tokenizer inside)."""

    id_start, id_end, id_pad = 1, 2, 2
    vocab: dict = {}

    def __init__(self):
        inverse = lambda ids: " ".join({v: k for k, v in self.vocab.items()}[i] for i in ids)  # noqa: E731
        self.wrapped = types.SimpleNamespace(tokenizer=types.SimpleNamespace(decode=inverse))

    def tokenize(self, texts):
        return [[self.vocab.setdefault(w, len(self.vocab) + 10) for w in t.lower().split()] for t in texts]

    def tokenize_line(self, line):
        ids = self.tokenize([line])[0]
        return [Chunk([self.id_start] + ids + [self.id_end] * (76 - len(ids)))], len(ids)


@pytest.fixture()
def ldm(monkeypatch):
    """Fake ``modules``, ``ldm_patched``, ``modules_forge`` and ``k_diff``; yields (host module, state)."""
    calls = types.SimpleNamespace(prepare=[], cleanup=[], batches=[], brownian=[])
    unet = UNetModel(context_dim=32).eval()
    base = BaseModel(unet)
    patcher = Patcher(base, {"transformer_options": {"patches_replace": {"attn2": {("input", 1, 0): "ip"},
                                                                         "attn1": {("middle", 0, 0): "sag"}},
                                                     "patches": {"attn2_patch": ["x"]}}})
    model = types.SimpleNamespace(forge_objects=types.SimpleNamespace(unet=patcher), is_sd1=True,
                                  cond_stage_model=Embedder(), alphas_cumprod=ALPHAS)
    shared = types.SimpleNamespace(sd_model=model, opts=types.SimpleNamespace(sgm_noise_multiplier=False, sd_sampling="A1111"),
                                   state=types.SimpleNamespace(interrupted=False, skipped=False, textinfo=None))

    def calc_cond_batch(model_, conds, x_in, timestep, model_options):
        calls.batches.append(dict(model=model_, conds=conds, x_in=x_in, timestep=timestep, model_options=model_options))
        cond = conds[0][0]["model_conds"]
        concat = cond.get("c_concat")
        out = model_.apply_model(x_in, timestep, c_crossattn=cond["c_crossattn"].cond,
                                 c_concat=None if concat is None else concat.cond,
                                 transformer_options=model_options.get("transformer_options"))
        return [out, torch.zeros_like(out)]

    def cond_from_a1111_to_patched_ldm(cond):  # modules_forge/forge_sampler.py
        if isinstance(cond, torch.Tensor):
            return [dict(cross_attn=cond, model_conds=dict(c_crossattn=Cond(cond)))]
        return [dict(cross_attn=cond["crossattn"], pooled_output=cond["vector"],
                     model_conds=dict(c_crossattn=Cond(cond["crossattn"]), y=Cond(cond["vector"])))]

    class Brownian:
        def __init__(self, where):
            self.where = where

        def BrownianTreeNoiseSampler(self, x, sigma_min, sigma_max, seed=None):
            calls.brownian.append((self.where, float(sigma_min), float(sigma_max), seed))
            return self.where

    prompt_parser = types.SimpleNamespace(
        reconstruct_multicond_batch=reconstruct_multicond_batch,
        parse_prompt_attention=lambda text: [[text, 1.0]],
        get_multicond_prompt_list=lambda prompts: ([[(i, 1.0) for i in range(len(prompts[0].split(" AND ")))]],
                                                   prompts[0].split(" AND "), None),
        get_learned_conditioning_prompt_schedules=lambda texts, steps: [[[steps, texts[0]]]])
    fakes = {
        "modules": types.ModuleType("modules"),
        "modules.shared": shared,
        "modules.rng": types.SimpleNamespace(ImageRNG=FakeImageRNG),
        "modules.prompt_parser": prompt_parser,
        "modules.devices": types.SimpleNamespace(device=torch.device("cpu")),
        "ldm_patched": types.ModuleType("ldm_patched"),
        "ldm_patched.modules": types.ModuleType("ldm_patched.modules"),
        "ldm_patched.modules.samplers": types.SimpleNamespace(calc_cond_batch=calc_cond_batch),
        "ldm_patched.modules.conds": types.SimpleNamespace(CONDRegular=Cond, CONDCrossAttn=Cond),
        "ldm_patched.k_diffusion": types.ModuleType("ldm_patched.k_diffusion"),
        "ldm_patched.k_diffusion.sampling": Brownian("ldm_patched"),
        "k_diff": types.ModuleType("k_diff"),
        "k_diff.k_diffusion": types.ModuleType("k_diff.k_diffusion"),
        "k_diff.k_diffusion.sampling": Brownian("k_diff"),
        "k_diffusion": types.ModuleType("k_diffusion"),
        "k_diffusion.sampling": Brownian("k_diffusion"),  # Forge Classic: ldm_patched/k_diffusion on sys.path
        "modules_forge": types.ModuleType("modules_forge"),
        "modules_forge.forge_sampler": types.SimpleNamespace(
            cond_from_a1111_to_patched_ldm=cond_from_a1111_to_patched_ldm,
            sampling_prepare=lambda unet, x: calls.prepare.append(unet),
            sampling_cleanup=lambda unet: calls.cleanup.append(unet)),
    }
    for name, module in fakes.items():
        monkeypatch.setitem(sys.modules, name, module)
    for name in ("shared", "rng", "prompt_parser", "devices"):
        setattr(fakes["modules"], name, fakes[f"modules.{name}"])
    import lib_initedit.webui.hosts as hosts_package

    ours = ("a1111", "patcher_family", "forge", "ldm_patched", "cache_key", "sampler_patches")
    for name in ours:  # fresh imports bound to the fakes; whatever was there is put back afterwards
        monkeypatch.delitem(sys.modules, f"lib_initedit.webui.hosts.{name}", raising=False)
        monkeypatch.delattr(hosts_package, name, raising=False)
    host = importlib.import_module("lib_initedit.webui.hosts.ldm_patched").LdmPatchedHost()
    yield host, types.SimpleNamespace(calls=calls, shared=shared, model=model, base=base, patcher=patcher, unet=unet,
                                      samplers=fakes["ldm_patched.modules.samplers"])
    for name in ours:
        sys.modules.pop(f"lib_initedit.webui.hosts.{name}", None)


def make_p(batch=2, sampler=None, steps=20):
    return types.SimpleNamespace(sampler=sampler, steps=steps, subseeds=[5, 6], subseed_strength=0.25,
                                 seed_resize_from_h=0, seed_resize_from_w=0, is_hr_pass=False,
                                 txt2img_image_conditioning=lambda x: torch.zeros(x.shape[0], 5, 1, 1))


class KSampler:
    def __init__(self, first):
        self.first = first

    def get_sigmas(self, p, steps):
        return torch.tensor([self.first, 1.0, 0.0])


def sigma_at(t):
    a = float(ALPHAS[t])
    return math.sqrt((1 - a) / a)


# --------------------------------------------------------------------------------------------- tests


def test_noise_comes_from_the_hosts_own_image_rng(ldm):
    host, _ = ldm
    stream = host.noise_stream(make_p(), (4, 8, 8), [11, 12])
    assert isinstance(stream, FakeImageRNG) and stream.seeds == [11, 12] and stream.shape == (4, 8, 8)
    assert stream.kwargs == {"subseeds": [5, 6], "subseed_strength": 0.25}


def test_unsupported_reasons(ldm):
    host, s = ldm
    assert host.unsupported_reason() is None
    s.base.model_type.name = "FLOW"
    assert "FLOW" in host.unsupported_reason()
    s.base.model_type.name = "V_PREDICTION"
    assert host.unsupported_reason() is None
    s.model.is_sd3 = True
    assert "SD3" in host.unsupported_reason()
    s.model.is_sd3, s.model.is_sd1 = False, False
    assert "not an SD1/SD2/SDXL" in host.unsupported_reason()
    assert host.unsupported_reason("reroll") is None  # reroll and keep need no UNet
    s.base.model_type.name = "FLOW"
    assert host.unsupported_reason("reroll") is None and "FLOW" not in (host.unsupported_reason("reroll") or "")
    s.base.model_type.name = "V_PREDICTION"
    s.model.is_sdxl = True
    assert host.unsupported_reason() is None
    s.model.forge_objects = None
    assert "UNet patcher" in host.unsupported_reason()
    s.shared.sd_model = None
    assert host.unsupported_reason() == "no model is loaded"


def test_unet_module_is_the_patchers_diffusion_model(ldm):
    host, s = ldm
    assert host.unet_module() is s.unet


@pytest.mark.parametrize("sgm", [False, True])
def test_first_sigma_of_k_samplers(ldm, sgm):
    host, s = ldm
    s.shared.opts.sgm_noise_multiplier = sgm
    sigma, scale = host.first_sigma(make_p(sampler=KSampler(14.6)))
    assert sigma == pytest.approx(14.6)
    assert scale == pytest.approx(1.0 if sgm else 14.6 / math.sqrt(1 + 14.6 ** 2))


def test_first_sigma_of_timestep_samplers_is_their_classic_ddim_sigma(ldm):
    """CFGDenoiserTimesteps gives the model sigma = sqrt((1 - a_t) / a_t) and x * sqrt(1 + sigma^2): the UNet sees x_T."""
    host, _ = ldm
    ddim = types.SimpleNamespace(get_timesteps=lambda p, steps: torch.tensor([1, 500, 951]))
    assert host.first_sigma(make_p(sampler=ddim)) == (pytest.approx(sigma_at(951)), 1.0)
    unipc = types.SimpleNamespace(get_timesteps=lambda p, steps: torch.tensor([1, 500, 751]),
                                  func=types.SimpleNamespace(__name__="unipc"))
    assert host.first_sigma(make_p(sampler=unipc)) == (pytest.approx(sigma_at(999)), 1.0)  # UniPC starts at t = 999


def test_probe_call_is_one_conditional_call_on_a_clone_at_the_first_sigma(ldm):
    host, s = ldm
    before = copy.deepcopy(s.patcher.model_options)
    options_object = s.patcher.model_options
    cond = torch.randn(4, 77, 32)
    c = Multicond([[(0, 1.0)], [(1, 1.0)]], cond)
    x = torch.randn(2, 4, 32, 32)
    out = host.probe_call(make_p(sampler=KSampler(10.0)), x, c, [1, 0])(x)
    assert out.shape == x.shape
    (batch,) = s.calls.batches
    assert batch["model"] is s.base and len(batch["conds"]) == 2 and batch["conds"][1] is None  # cond only
    assert torch.allclose(batch["x_in"], x * 10.0)  # x_T * sigmas[0], as the k-sampler starts
    assert batch["timestep"].tolist() == [10.0, 10.0]
    assert torch.equal(batch["conds"][0][0]["model_conds"]["c_crossattn"].cond, cond[[1, 0]])
    assert "c_concat" not in batch["conds"][0][0]["model_conds"]  # txt2img's (B, 5, 1, 1) zeros: not an inpaint model
    options = batch["model_options"]
    assert "attn2" not in options["transformer_options"]["patches_replace"]
    assert options["transformer_options"]["patches_replace"]["attn1"] == {("middle", 0, 0): "sag"}
    assert options["transformer_options"]["patches"] == {"attn2_patch": ["x"]}
    (clone,) = s.patcher.clones
    assert clone.model_options is options  # the probe's options are its clone's
    assert s.patcher.model_options is options_object and s.patcher.model_options == before  # shared patcher untouched
    assert s.calls.prepare == [s.patcher] and s.calls.cleanup == [s.patcher]  # loaded where the sampler runs it
    unet_in = s.base.model_sampling.calculate_input(batch["timestep"], batch["x_in"])
    assert torch.allclose(unet_in, x * 10.0 / math.sqrt(101.0))


def test_probe_call_for_an_inpainting_model_passes_its_image_conditioning(ldm):
    host, s = ldm
    x = torch.randn(1, 4, 8, 8)
    p = make_p(sampler=KSampler(3.0))
    p.txt2img_image_conditioning = lambda x_: torch.ones(x_.shape[0], 5, 8, 8)
    c = Multicond([[(0, 1.0)]], torch.randn(1, 77, 32))
    try:
        host.probe_call(p, x, c, [0])(x)
    except Exception:  # the tiny UNet has 4 input channels; only the conds matter here
        pass
    (batch,) = s.calls.batches
    assert torch.equal(batch["conds"][0][0]["model_conds"]["c_concat"].cond, torch.ones(1, 5, 8, 8))
    assert s.calls.prepare == s.calls.cleanup == [s.patcher]


def test_probe_call_with_sdxl_dict_conds(ldm):
    host, s = ldm
    cond = {"crossattn": torch.randn(2, 77, 32), "vector": torch.randn(2, 16)}
    c = Multicond([[(0, 1.0)], [(1, 1.0)]], cond)
    x = torch.randn(1, 4, 32, 32)
    host.probe_call(make_p(sampler=KSampler(5.0)), x, c, [1])(x)
    (batch,) = s.calls.batches
    conds = batch["conds"][0][0]["model_conds"]
    assert torch.equal(conds["c_crossattn"].cond, cond["crossattn"][[1]]) and torch.equal(conds["y"].cond, cond["vector"][[1]])


def test_forge_classic_has_only_calc_cond_uncond_batch(ldm):
    host, s = ldm
    seen = []

    def calc_cond_uncond_batch(model_, cond, uncond, x_in, timestep, model_options):
        seen.append((cond, uncond))
        return torch.full_like(x_in, 3.0), torch.zeros_like(x_in)

    del s.samplers.calc_cond_batch
    s.samplers.calc_cond_uncond_batch = calc_cond_uncond_batch
    x = torch.randn(1, 4, 8, 8)
    out = host.probe_call(make_p(sampler=KSampler(2.0)), x, Multicond([[(0, 1.0)]], torch.randn(1, 77, 32)), [0])(x)
    assert torch.equal(out, torch.full_like(x, 3.0)) and seen[0][1] is None


def test_cleanup_also_when_the_probe_stops_early(ldm):
    host, s = ldm
    c = Multicond([[(0, 1.0)]], torch.randn(1, 77, 32))
    x = torch.randn(1, 4, 32, 32)
    result = probe.run_layout(host.unet_module(), host.probe_call(make_p(sampler=KSampler(14.6)), x, c, [0]), x,
                              [[[3]]], [[(0, 0, 0.5, 1)]], measure_after=True)
    assert result.probes == 2 and len(result.maps_before) == 1
    assert len(s.calls.prepare) == len(s.calls.cleanup) == 2  # the StopProbe after the last layer passed `finally`
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in s.unet.modules())  # hooks removed


def test_run_layout_through_the_probe_is_a_block_permutation(ldm):
    host, _ = ldm
    c = Multicond([[(0, 1.0)], [(1, 1.0)]], torch.randn(2, 77, 32))
    x = torch.randn(2, 4, 32, 32)
    result = probe.run_layout(host.unet_module(), host.probe_call(make_p(sampler=KSampler(14.6)), x, c, [0, 1]), x,
                              [[[3]], [[4, 5]]], [[(0, 0, 0.5, 1)], [(0.5, 0, 1, 1)]])
    for b in range(2):
        assert torch.equal(result.noise[b].flatten().sort().values, x[b].flatten().sort().values)


def test_text_through_the_a1111_embedders(ldm):
    host, s = ldm
    chunks = host.prompt_chunks("a cat and a dog")
    ids = host.encode_phrase("dog")
    assert len(chunks) == 1 and chunks[0][-1] == ids[0] and len(chunks[0]) == 5
    assert host.decode_tokens(ids) == "dog"
    assert host.subprompts_at_step0("a cat AND a dog", 20) == ["a cat", "a dog"]
    assert host.cond_rows_of(Multicond([[(0, 1.0), (1, 0.5)], [(2, 1.0)]], None)) == [[0, 1], [2]]
    s.model.conditioner = types.SimpleNamespace(embedders=[object(), Embedder()])  # SDXL: the CLIP-L embedder
    assert host.prompt_chunks("a cat") == [chunks[0][:2]]


@pytest.mark.parametrize("backend,where", [("A1111", "k_diff"), ("ldm patched (Comfy)", "ldm_patched"),
                                           (None, "k_diffusion")])  # None: Forge Classic has no such option
def test_brownian_noise_from_the_k_diffusion_in_use(ldm, backend, where):
    host, s = ldm
    if backend is None:
        del s.shared.opts.sd_sampling
    else:
        s.shared.opts.sd_sampling = backend
    assert host.brownian_noise(torch.zeros(1, 4, 8, 8), torch.tensor([14.6, 3.0, 0.5, 0.0]), [7]) == where
    assert s.calls.brownian == [(where, 0.5, pytest.approx(14.6), [7])]


def test_sampling_functions_wrap_replace_patches_and_keys_hold_this_lines_settings(ldm, monkeypatch):
    host, s = ldm
    seen = []
    a1111 = sys.modules["lib_initedit.webui.hosts.a1111"].A1111Host
    family = sys.modules["lib_initedit.webui.hosts.patcher_family"]
    monkeypatch.setattr(a1111, "hook_sampling", lambda self, p, hooks: seen.append(("hook", hooks)) or "restore")
    monkeypatch.setattr(a1111, "sample_base", lambda self, p, x, c, uc, hooks: seen.append(("base", hooks)))
    monkeypatch.setattr(a1111, "base_key", lambda self, p, x, c, uc, index, extra: extra)
    monkeypatch.setattr(family, "ReplacedAttentionGuidance", lambda host_, p, hooks: ("guided", hooks))
    assert host.hook_sampling(None, "H") == "restore"
    host.sample_base(None, None, None, None, "H2")
    assert seen == [("hook", ("guided", "H")), ("base", ("guided", "H2"))]
    s.shared.opts.sd_sampling = "ldm patched (Comfy)"
    key = host.base_key(None, None, None, None, 0, "initedit")
    assert key.startswith("initedit\0ldm_patched:") and "ldm patched (Comfy)" in key


def test_state(ldm):
    host, s = ldm
    assert not host.should_stop()
    s.shared.state.interrupted = True
    assert host.should_stop()
    host.set_textinfo("probing")
    assert s.shared.state.textinfo == "probing"


# --------------------------------------------------------------------------------------------- selection


@pytest.fixture()
def selection(monkeypatch):
    hosts = importlib.import_module("lib_initedit.webui.hosts")
    present: set = set()
    monkeypatch.setattr(hosts, "_importable", lambda name: name in present)
    monkeypatch.setattr(hosts, "import_module", lambda name: types.SimpleNamespace(
        **{cls: (lambda cls=cls: f"{name}.{cls}") for _, cls in hosts.HOST_CLASSES.values()}))
    return hosts, present


def test_select_host_picks_the_ldm_patched_adapter_by_feature(selection):
    hosts, present = selection
    model = types.SimpleNamespace(forge_objects=object())
    present.update({"ldm_patched", "ldm_patched.modules.samplers", "modules_forge.forge_sampler"})
    assert hosts.backend_kind(model) == "ldm_patched"
    ldm, forge, a1111 = ("lib_initedit.webui.hosts.ldm_patched.LdmPatchedHost", "lib_initedit.webui.hosts.forge.ForgeHost",
                         "lib_initedit.webui.hosts.a1111.A1111Host")
    assert hosts.select_host(model) == ldm
    assert hosts.select_host(types.SimpleNamespace()) == ldm  # before a model loads
    present.discard("modules_forge.forge_sampler")  # an ldm_patched without what the host calls
    assert hosts.select_host(model) == a1111  # A1111's host names the unknown patcher, nothing is edited
    present.update({"modules_forge.forge_sampler", "backend", "backend.patcher.unet"})
    assert hosts.select_host(model) == forge  # Forge 2's backend decides first
    present.clear()
    assert hosts.select_host(types.SimpleNamespace(model=None)) == a1111
