"""The Forge host (``lib_initedit/webui/hosts/forge.py``), the patcher family's guidance through attn2 replace
patches, and host selection (``webui/hosts/__init__.py``) against fakes of Forge's ``modules`` / ``backend`` (no
Forge needed). The real thing: ``tests/webui/test_forge.py``."""
from __future__ import annotations

import copy
import importlib
import math
import sys
import types

import pytest
import torch

from lib_initedit.layout import probe
from lib_initedit.layout.guidance import LayoutGuidance, select_guided_layers
from lib_initedit.sampling_hooks import Call, SamplingHooks
from lib_initedit.patcher import attn2_modules, probe_model_options
from lib_initedit.webui.hosts.protocol import Host
from tests.ldm_like import UNetModel

# --------------------------------------------------------------------------------------------- fakes


class FakeImageRNG:
    def __init__(self, shape, seeds, subseeds=None, subseed_strength=0.0, seed_resize_from_h=0, seed_resize_from_w=0):
        self.shape, self.seeds = tuple(shape), list(seeds)
        self.kwargs = dict(subseeds=subseeds, subseed_strength=subseed_strength,
                           seed_resize_from_h=seed_resize_from_h, seed_resize_from_w=seed_resize_from_w)

    def next(self):
        return torch.stack([torch.randn(self.shape, generator=torch.Generator().manual_seed(s)) for s in self.seeds])


class Multicond:
    """Stands in for MulticondLearnedConditioning: reconstruct_multicond_batch(c, 0) -> (conds_list, tensor)."""

    def __init__(self, conds_list, tensor):
        self.conds_list, self.tensor = conds_list, tensor


def reconstruct_multicond_batch(c, step):
    return c.conds_list, c.tensor


class Predictor:
    sigmas = torch.linspace(0.03, 14.6, 1000)

    @property
    def sigma_max(self):
        return self.sigmas[-1]

    def sigma(self, t):
        return self.sigmas[t.long().clamp(0, 999)]

    def calculate_input(self, sigma, x):
        return x / (sigma.reshape(-1, 1, 1, 1) ** 2 + 1) ** 0.5


class KModel:
    """Like backend.modules.k_model.KModel: takes sigma, applies c_in itself."""

    def __init__(self, unet):
        self.diffusion_model = unet
        self.predictor = Predictor()
        self.calls = []

    def apply_model(self, x, t, c_crossattn=None, transformer_options=None, **kwargs):
        self.calls.append(dict(x=x, t=t, context=c_crossattn, transformer_options=transformer_options, **kwargs))
        return self.diffusion_model(self.predictor.calculate_input(t, x), t, context=c_crossattn)


class Patcher:
    def __init__(self, kmodel, model_options):
        self.model, self.model_options = kmodel, model_options
        self.clones = 0

    def clone(self):  # backend/patcher/unet.py: a new patcher on the same model, options deep-copied
        self.clones += 1
        return Patcher(self.model, copy.deepcopy(self.model_options))


class Engine:
    """ClassicTextProcessingEngine's surface: tokenize_line -> (chunks, count), tokenize, ids, tokenizer."""

    id_start, id_end, id_pad = 1, 2, 2
    vocab: dict = {}

    def tokenize(self, texts):
        return [[self.vocab.setdefault(w, len(self.vocab) + 10) for w in t.lower().split()] for t in texts]

    def tokenize_line(self, line):
        ids = self.tokenize([line])[0]
        chunks = [types.SimpleNamespace(tokens=[1] + ids[i:i + 75] + [2] * (75 - len(ids[i:i + 75])) + [2])
                  for i in range(0, max(1, len(ids)), 75)]
        return chunks, len(ids)

    class tokenizer:
        @staticmethod
        def decode(ids):
            inverse = {v: k for k, v in Engine.vocab.items()}
            return " ".join(inverse[i] for i in ids)


@pytest.fixture()
def forge(monkeypatch):
    """Fake ``modules`` and ``backend`` packages; yields (a ForgeHost bound to them, state namespace)."""
    calls = types.SimpleNamespace(prepare=0, cleanup=0, batches=[])
    unet = UNetModel(context_dim=32).eval()
    kmodel = KModel(unet)
    patcher = Patcher(kmodel, {"transformer_options": {"patches_replace": {"attn2": {("input", 1, 0): "ip"},
                                                                           "attn1": {("middle", 0, 0): "sag"}},
                                                       "patches": {"attn2_patch": ["x"]}}})
    model = types.SimpleNamespace(forge_objects=types.SimpleNamespace(unet=patcher), is_sd1=True,
                                  text_processing_engine=Engine(), cond_stage_model=None)
    shared = types.SimpleNamespace(sd_model=model, opts=types.SimpleNamespace(sgm_noise_multiplier=False),
                                   state=types.SimpleNamespace(interrupted=False, skipped=False, textinfo=None))

    def compile_conditions(cond):
        if isinstance(cond, torch.Tensor):
            return [dict(cross_attn=cond, model_conds=dict(c_crossattn=cond))]
        return [dict(cross_attn=cond["crossattn"], model_conds=dict(c_crossattn=cond["crossattn"], y=cond["vector"]))]

    def calc_cond_uncond_batch(model, cond, uncond, x_in, timestep, model_options):
        assert uncond is None
        calls.batches.append(dict(x_in=x_in, timestep=timestep, model_options=model_options, cond=cond))
        out = model.apply_model(x_in, timestep, transformer_options=model_options.get("transformer_options"),
                                **cond[0]["model_conds"])
        return out, torch.zeros_like(out)

    def sampling_prepare(unet, x):
        calls.prepare += 1

    def sampling_cleanup(unet):
        calls.cleanup += 1

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
        "modules.devices": types.SimpleNamespace(device="cpu"),
        "backend": types.ModuleType("backend"),
        "backend.sampling": types.ModuleType("backend.sampling"),
        "backend.sampling.condition": types.SimpleNamespace(Condition=lambda t: ("Condition", t),
                                                            compile_conditions=compile_conditions),
        "backend.sampling.sampling_function": types.SimpleNamespace(
            calc_cond_uncond_batch=calc_cond_uncond_batch, sampling_prepare=sampling_prepare,
            sampling_cleanup=sampling_cleanup),
    }
    for name, module in fakes.items():
        monkeypatch.setitem(sys.modules, name, module)
    for parent, child in (("modules", "shared"), ("modules", "rng"), ("modules", "prompt_parser"), ("modules", "devices")):
        setattr(fakes[parent], child, fakes[f"{parent}.{child}"])
    for name in HOST_MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    host = importlib.import_module("lib_initedit.webui.hosts.forge").ForgeHost()
    yield host, types.SimpleNamespace(calls=calls, shared=shared, model=model, kmodel=kmodel, patcher=patcher, unet=unet)
    for name in HOST_MODULES:
        sys.modules.pop(name, None)


HOST_MODULES = [f"lib_initedit.webui.hosts.{name}" for name in
                ("forge", "patcher_family", "a1111", "cache_key", "sampler_patches")]  # bound to the fakes


def guided_hooks(host, p, hooks):
    """What the Forge host wraps a batch's hooks in while its sampler runs."""
    from lib_initedit.webui.hosts.patcher_family import ReplacedAttentionGuidance

    return ReplacedAttentionGuidance(host, p, hooks)


def make_p(batch=2, sampler=None, steps=20):
    return types.SimpleNamespace(sampler=sampler, steps=steps, subseeds=[5, 6], subseed_strength=0.25,
                                 seed_resize_from_h=0, seed_resize_from_w=0, is_hr_pass=False,
                                 txt2img_image_conditioning=lambda x: torch.zeros(x.shape[0], 5, 1, 1))


class KSampler:
    def __init__(self, first):
        self.first = first

    def get_sigmas(self, p, steps):
        return torch.tensor([self.first, 1.0, 0.0])


# --------------------------------------------------------------------------------------------- tests


def test_noise_comes_from_the_hosts_own_image_rng(forge):
    host, _ = forge
    stream = host.noise_stream(make_p(), (4, 8, 8), [11, 12])
    assert isinstance(stream, FakeImageRNG) and stream.seeds == [11, 12] and stream.shape == (4, 8, 8)
    assert stream.kwargs["subseeds"] == [5, 6] and stream.kwargs["subseed_strength"] == 0.25


def test_unsupported_reasons(forge):
    host, s = forge
    assert host.unsupported_reason() is None
    s.model.is_sd1 = False
    s.model.is_flux = True
    assert "Flux" in host.unsupported_reason()
    s.model.is_flux = False
    assert "not an SD1/SD2/SDXL" in host.unsupported_reason()
    s.model.is_sdxl = True
    assert host.unsupported_reason() is None
    s.model.forge_objects = None
    assert "UNet patcher" in host.unsupported_reason()
    s.shared.sd_model = None
    assert host.unsupported_reason() == "no model is loaded"


def test_reroll_and_keep_run_on_every_family_layout_only_on_unet_models(forge):
    """Per feature: "reroll" (reroll, keep, per-step noise) needs only the patcher; "layout" a UNet. The layout
    reason names the family (the diffusion engine's class) and says what is missing."""
    host, s = forge
    assert host.unsupported_reason("reroll") is None and host.unsupported_reason("layout") is None
    s.model.is_sd1 = False
    s.model.is_flux = True  # Forge 2's flag
    assert host.unsupported_reason("reroll") is None
    assert "Flux" in host.unsupported_reason("layout") and "layout" in host.unsupported_reason("layout")
    s.model.is_flux = False
    Anima = type("Anima", (), {})  # Neo: the diffusion engine's class names the family
    anima = Anima()
    anima.forge_objects = s.model.forge_objects
    s.shared.sd_model = s.model = anima
    assert host.unsupported_reason("reroll") is None
    assert host.unsupported_reason("layout").startswith("Anima is not an SD1/SD2/SDXL UNet model")
    s.model.forge_objects = None  # what stops reroll stops layout too
    assert "UNet patcher" in host.unsupported_reason("reroll") and "UNet patcher" in host.unsupported_reason("layout")


def test_unet_module_is_the_patchers_diffusion_model(forge):
    host, s = forge
    assert host.unet_module() is s.unet


@pytest.mark.parametrize("sgm", [False, True])
def test_first_sigma_of_k_samplers(forge, sgm):
    host, s = forge
    s.shared.opts.sgm_noise_multiplier = sgm
    sigma, scale = host.first_sigma(make_p(sampler=KSampler(14.6)))
    assert sigma == pytest.approx(14.6)
    assert scale == pytest.approx(1.0 if sgm else 14.6 / math.sqrt(1 + 14.6 ** 2))


def test_first_sigma_of_timestep_samplers_and_fallback(forge):
    host, s = forge
    ddim = types.SimpleNamespace(get_timesteps=lambda p, steps: torch.tensor([1, 500, 999]))
    assert host.first_sigma(make_p(sampler=ddim)) == (pytest.approx(float(Predictor.sigmas[999])), 1.0)
    assert host.first_sigma(make_p(sampler=None)) == (pytest.approx(float(Predictor.sigmas[-1])), 1.0)


def test_probe_options_leave_out_only_attn2_replace_and_copy(forge):
    host, s = forge
    original = s.patcher.model_options
    options, dropped = probe_model_options(original)
    assert dropped == [("input", 1, 0)]
    assert options["transformer_options"]["patches_replace"] == {"attn1": {("middle", 0, 0): "sag"}}
    assert options["transformer_options"]["patches"] == {"attn2_patch": ["x"]}
    assert original["transformer_options"]["patches_replace"]["attn2"] == {("input", 1, 0): "ip"}  # untouched


def test_probe_call_is_one_conditional_call_at_the_first_sigma(forge):
    host, s = forge
    cond = torch.randn(4, 77, 32)  # rows: image0 cond, image1 cond, and two uncond/other rows
    c = Multicond([[(0, 1.0)], [(1, 1.0)]], cond)
    p = make_p(sampler=KSampler(10.0))
    x = torch.randn(2, 4, 32, 32)
    out = host.probe_call(p, x, c, [1, 0])(x)
    assert out.shape == x.shape
    (batch,) = s.calls.batches
    assert torch.allclose(batch["x_in"], x * 10.0)  # x_T * sigmas[0], as the k-sampler starts
    assert batch["timestep"].tolist() == [10.0, 10.0]
    assert torch.equal(batch["cond"][0]["model_conds"]["c_crossattn"], cond[[1, 0]])
    assert "attn2" not in batch["model_options"]["transformer_options"]["patches_replace"]
    assert "c_concat" not in batch["cond"][0]["model_conds"]  # txt2img's (B, 5, 1, 1) zeros: not an inpaint model
    assert s.calls.prepare == 1 and s.calls.cleanup == 1
    unet_in = s.kmodel.predictor.calculate_input(batch["timestep"], batch["x_in"])
    assert torch.allclose(unet_in, x * 10.0 / math.sqrt(101.0))  # = x * sqrt(1 - alpha_bar) at sigma 10


def test_probe_call_with_sdxl_dict_conds(forge):
    host, s = forge
    cond = {"crossattn": torch.randn(2, 77, 32), "vector": torch.randn(2, 16)}
    c = Multicond([[(0, 1.0)], [(1, 1.0)]], cond)
    from lib_initedit.webui.hosts.patcher_family import _cond_rows

    rows = _cond_rows(c, [1])
    assert torch.equal(rows["crossattn"], cond["crossattn"][[1]]) and torch.equal(rows["vector"], cond["vector"][[1]])


def test_cleanup_also_when_the_probe_stops_early(forge):
    host, s = forge
    c = Multicond([[(0, 1.0)]], torch.randn(1, 77, 32))
    x = torch.randn(1, 4, 32, 32)
    result = probe.run_layout(host.unet_module(), host.probe_call(make_p(sampler=KSampler(14.6)), x, c, [0]), x,
                              [[[3]]], [[(0, 0, 0.5, 1)]], measure_after=True)
    assert result.probes == 2 and len(result.maps_before) == 1
    assert s.calls.prepare == s.calls.cleanup == 2  # the StopProbe after the last layer passed through `finally`


def test_run_layout_through_the_forge_probe_is_a_block_permutation(forge):
    host, _ = forge
    c = Multicond([[(0, 1.0)], [(1, 1.0)]], torch.randn(2, 77, 32))
    x = torch.randn(2, 4, 32, 32)
    result = probe.run_layout(host.unet_module(), host.probe_call(make_p(sampler=KSampler(14.6)), x, c, [0, 1]), x,
                              [[[3]], [[4, 5]]], [[(0, 0, 0.5, 1)], [(0.5, 0, 1, 1)]])
    for b in range(2):
        assert torch.equal(result.noise[b].flatten().sort().values, x[b].flatten().sort().values)


def test_text_through_the_text_processing_engine(forge):
    host, s = forge
    chunks = host.prompt_chunks("a cat and a dog")
    ids = host.encode_phrase("dog")
    assert len(chunks) == 1 and chunks[0][-1] == ids[0] and len(chunks[0]) == 5
    assert host.decode_tokens(ids) == "dog"
    assert host.subprompts_at_step0("a cat AND a dog", 20) == ["a cat", "a dog"]
    assert host.cond_rows_of(Multicond([[(0, 1.0), (1, 0.5)], [(2, 1.0)]], None)) == [[0, 1], [2]]
    del s.model.text_processing_engine
    s.model.text_processing_engine_l = Engine()  # SDXL: CLIP-L's engine
    assert host.prompt_chunks("a cat") == [chunks[0][:2]]


def test_state(forge):
    host, s = forge
    host.set_textinfo("probing")
    assert s.shared.state.textinfo == "probing" and not host.should_stop()
    s.shared.state.interrupted = True
    assert host.should_stop()
    assert host.opt("sgm_noise_multiplier", None) is False and host.opt("nope", 3) == 3


# --------------------------------------------------------------------------------------------- selection


@pytest.fixture()
def selection(monkeypatch):
    hosts = importlib.import_module("lib_initedit.webui.hosts")
    present: set = set()
    monkeypatch.setattr(hosts, "_importable", lambda name: name in present)
    chosen = []

    def import_module(name):  # records the module and gives a stand-in whose classes return their own names
        chosen.append(name)
        return types.SimpleNamespace(**{cls: (lambda cls=cls: f"{name}.{cls}") for _, cls in hosts.HOST_CLASSES.values()})

    monkeypatch.setattr(hosts, "import_module", import_module)
    return hosts, present, chosen


def test_select_host_by_feature(selection):
    hosts, present, chosen = selection
    a1111_model = types.SimpleNamespace(model=None)
    forge_model = types.SimpleNamespace(forge_objects=object())
    placeholder = types.SimpleNamespace()  # Forge's FakeInitialModel before a checkpoint is loaded
    assert hosts.select_host(a1111_model) == "lib_initedit.webui.hosts.a1111.A1111Host"
    assert hosts.backend_kind(forge_model) == "ldm_patched"  # forge_objects but no known backend
    present.update({"backend", "backend.patcher.unet"})
    assert hosts.backend_kind(forge_model) == "forge"
    assert hosts.select_host(forge_model) == "lib_initedit.webui.hosts.forge.ForgeHost"
    assert hosts.select_host(placeholder) == "lib_initedit.webui.hosts.forge.ForgeHost"
    present.clear()
    present.add("ldm_patched")
    assert hosts.backend_kind(forge_model) == "ldm_patched"
    # ldm_patched without its samplers: not a known line, A1111's host names it and edits nothing
    assert hosts.select_host(forge_model) == "lib_initedit.webui.hosts.a1111.A1111Host"
    assert all(name.startswith("lib_initedit.webui.hosts.") for name in chosen)


def test_select_host_without_a_loaded_model_goes_by_the_backend(selection, monkeypatch):
    hosts, present, _ = selection
    monkeypatch.setattr(hosts, "loaded_model", lambda: None)
    assert hosts.backend_kind() == "a1111"
    present.update({"backend", "backend.patcher.unet"})
    assert hosts.backend_kind() == "forge"


def test_importable_is_safe_outside_a_webui():
    hosts = importlib.import_module("lib_initedit.webui.hosts")
    assert hosts._importable("json") and not hosts._importable("no_such_module_initedit")
    assert not hosts._importable("json.no_such_child")


def test_forge_settings_that_change_a_first_pass_are_in_the_keep_key(forge, monkeypatch):
    host, s = forge
    from lib_initedit.webui.hosts.a1111 import A1111Host

    monkeypatch.setattr(A1111Host, "base_key", lambda self, p, x, c, uc, index, extra: extra)
    s.shared.opts.forge_additional_modules = ["vae.safetensors"]
    key = host.base_key(None, None, None, None, 0, "initedit")
    assert key.startswith("initedit\0forge:") and "vae.safetensors" in key


# ------------------------------------------------------------------ guidance through attn2 replace patches


def forge_attn2(options, module, block, block_index, x, context):
    """The attn2 part of backend/nn/unet.py BasicTransformerBlock._forward, as Forge runs it."""
    to = options.get("transformer_options", {})
    extra = {k: v for k, v in to.items() if k not in ("patches", "patches_replace")}
    extra.update(block=block, block_index=block_index, n_heads=module.heads)
    patches, replace = to.get("patches", {}), to.get("patches_replace", {}).get("attn2", {})
    n, ctx, value = x, context, None
    if "attn2_patch" in patches:
        value = ctx
        for patch in patches["attn2_patch"]:
            n, ctx, value = patch(n, ctx, value, extra)
    key = (block[0], block[1], block_index)
    if key not in replace:
        key = block
    if key in replace:
        n = module.to_out(replace[key](module.to_q(n), module.to_k(ctx), module.to_v(ctx if value is None else value), extra))
    else:
        n = module(n, context=ctx)
    for patch in patches.get("attn2_output_patch", []):
        n = patch(n, extra)
    return n


def plain_attention(q, k, v, extra):
    """What an IP-Adapter-style replace patch computes for the text part: attention_function(q, k, v, heads)."""
    b, n, inner = q.shape
    heads = extra["n_heads"]
    q, k, v = (t.reshape(b, t.shape[1], heads, -1).transpose(1, 2) for t in (q, k, v))
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    return out.transpose(1, 2).reshape(b, n, inner)


def shape(o):
    """Containers by identity and content, leaves by identity: 'exactly as before'."""
    if isinstance(o, dict):
        return ("dict", id(o), {k: shape(v) for k, v in o.items()})
    if isinstance(o, list):
        return ("list", id(o), [shape(v) for v in o])
    return id(o)


class Movable:
    """A replace patch that Forge's loader moves (model_patches_to calls .to on what has it)."""

    def __init__(self):
        self.calls, self.moved = 0, []

    def __call__(self, q, k, v, extra):
        self.calls += 1
        return plain_attention(q, k, v, extra)

    def to(self, device):
        self.moved.append(device)
        return self


def attn2_by_name(unet):
    return {name: m for name, m in unet.named_modules() if name.endswith("attn2")}


@pytest.fixture()
def replaced(forge):
    """The fake Forge with replace patches on one input and one output block (keyed with and without the
    transformer index), plus other extensions' attn1 / attn2 / output patches and a model wrapper."""
    host, s = forge
    torch.manual_seed(0)
    keys = attn2_modules(s.unet)
    names = attn2_by_name(s.unet)
    first_in = next(k for k in keys if k[0] == "input")
    last_out = max(k for k in keys if k[0] == "output")
    ip = Movable()
    seen = []
    other_out = lambda n, extra: seen.append(extra["block"]) or n  # noqa: E731
    s.patcher.model_options = {
        "transformer_options": {"patches_replace": {"attn2": {first_in: ip, last_out[:2]: plain_attention},
                                                    "attn1": {("middle", 0, 0): "sag"}},
                                "patches": {"attn2_patch": [lambda n, c, v, extra: (n, c, v)],
                                            "attn2_output_patch": [other_out]}},
        "model_function_wrapper": "wrapper"}
    return types.SimpleNamespace(host=host, s=s, keys=keys, names=names, first_in=first_in, last_out=last_out,
                                 ip=ip, seen=seen, before=shape(s.patcher.model_options))


def guidance_for(unet, layers="all", strength=8.0):
    return LayoutGuidance(unet, select_guided_layers(unet, layers), strength, 1.0, [[[2, 3]]], [[(0.0, 0.0, 0.5, 1.0)]])


def test_attn2_modules_are_keyed_as_forges_transformer_blocks_look_their_patch_up(replaced):
    r = replaced
    assert {id(m) for m in r.keys.values()} == {id(m) for m in r.names.values()}
    for (name, number, index), module in r.keys.items():
        prefix = "middle_block" if name == "middle" else f"{name}_blocks.{number}"
        found = [n for n, m in r.names.items() if m is module]
        assert found[0].startswith(prefix + ".") and f".transformer_blocks.{index}.attn2" in found[0]


def test_guidance_acts_through_attn2_replace_patches_on_a_clone_and_leaves_everything_as_before(replaced):
    r, s = replaced, replaced.s
    patcher = s.patcher
    guide = guidance_for(s.unet)
    hooks = guided_hooks(r.host, types.SimpleNamespace(sd_model=s.model), SamplingHooks([guide]))
    assert s.model.forge_objects.unet is patcher  # nothing before the sampler starts
    cond, uncond = torch.randn(1, 8, 32), torch.randn(1, 8, 32)
    context = torch.cat([cond, uncond])
    hooks.enter()
    try:
        clone = s.model.forge_objects.unet
        assert clone is not patcher and clone.model is patcher.model and patcher.clones == 1
        assert shape(patcher.model_options) == r.before  # the shared patcher's options: not one container touched
        options = clone.model_options
        assert options["model_function_wrapper"] == "wrapper"
        assert options["transformer_options"]["patches_replace"]["attn1"] == {("middle", 0, 0): "sag"}
        hooks.before_call(Call.plain(0, 10), cond)
        for key in (r.first_in, r.last_out):
            module = r.keys[key]
            x = torch.randn(2, 16, module.to_q.in_features)
            plain = type(module).forward(module, x, context=context)  # the class's forward: no guidance
            guided = module(x, context=context)  # through the guidance's forward wrapper
            through_patch = forge_attn2(options, module, key[:2], key[2], x, context)
            assert torch.allclose(through_patch, guided, atol=1e-5)  # the same change as on the forward path
            assert not torch.allclose(through_patch[0], plain[0], atol=1e-3)  # the cond row is guided
            assert torch.allclose(through_patch[1], plain[1], atol=1e-5)  # the uncond row is not
            # a block without a replace patch goes through attn2.forward as before; the pieces pass
            assert torch.allclose(forge_attn2(options, module, ("input", 999), 0, x, context), guided, atol=1e-6)
        assert r.ip.calls == 1  # the original patch ran (the other one is a plain function)
        assert r.seen == [r.first_in[:2], ("input", 999), r.last_out[:2], ("input", 999)]  # the other output patch ran
        assert hooks.blocks.calls == 2 and guide.calls_guided == 2 + 4  # 2 through the patches, 4 forward calls
        for table in options["transformer_options"]["patches_replace"]["attn2"].values():
            table.to("cpu")  # Forge's loader moving patches moves the original (what has .to)
        assert r.ip.moved == ["cpu"]
    finally:
        hooks.leave(True)
    assert s.model.forge_objects.unet is patcher and shape(patcher.model_options) == r.before
    assert not any("forward" in vars(m) for m in r.names.values())  # the guidance's wrappers are gone too


def test_after_an_error_in_sampling_everything_is_as_before(replaced):
    r, s = replaced, replaced.s
    guide = guidance_for(s.unet)
    hooks = guided_hooks(r.host, types.SimpleNamespace(sd_model=s.model), SamplingHooks([guide]))
    with pytest.raises(RuntimeError):
        hooks.enter()
        try:
            raise RuntimeError("interrupted in the sampler")
        finally:
            hooks.leave(False)
    assert s.model.forge_objects.unet is s.patcher and shape(s.patcher.model_options) == r.before
    assert not any("forward" in vars(m) for m in r.names.values())

    def failing_clone():
        raise RuntimeError("no memory for a clone")

    s.patcher.clone = failing_clone
    with pytest.raises(RuntimeError, match="no memory"):
        hooks.enter()
    assert s.model.forge_objects.unet is s.patcher and not any("forward" in vars(m) for m in r.names.values())


def test_replaced_blocks_follow_the_guidances_layer_choice(replaced):
    r, s = replaced, replaced.s
    guide = guidance_for(s.unet, layers="down")  # the output block's replace patch is not a guided layer
    hooks = guided_hooks(r.host, types.SimpleNamespace(sd_model=s.model), SamplingHooks([guide]))
    cond = torch.randn(1, 8, 32)
    context = torch.cat([cond, torch.randn(1, 8, 32)])
    hooks.enter()
    try:
        hooks.before_call(Call.plain(0, 10), cond)
        module = r.keys[r.last_out]
        x = torch.randn(2, 16, module.to_q.in_features)
        out = forge_attn2(s.model.forge_objects.unet.model_options, module, r.last_out[:2], r.last_out[2], x, context)
        assert torch.allclose(out, type(module).forward(module, x, context=context), atol=1e-5)
        hooks.before_call(Call.plain(9, 10), None)  # past the guided steps (no conds): the first block passes too
        module = r.keys[r.first_in]
        x = torch.randn(2, 16, module.to_q.in_features)
        out = forge_attn2(s.model.forge_objects.unet.model_options, module, r.first_in[:2], r.first_in[2], x, context)
        assert torch.allclose(out, type(module).forward(module, x, context=context), atol=1e-5)
    finally:
        hooks.leave(True)


def test_nothing_is_cloned_without_replace_patches_or_without_guidance(replaced):
    r, s = replaced, replaced.s
    p = types.SimpleNamespace(sd_model=s.model)
    plain = SamplingHooks([types.SimpleNamespace(after_call=lambda i, t, d: None)])  # no part guides attention
    off = SamplingHooks([guidance_for(s.unet, strength=0.0)])
    for hooks in (plain, off):
        wrapped = guided_hooks(r.host, p, hooks)
        wrapped.enter()
        try:
            assert s.model.forge_objects.unet is s.patcher and s.patcher.clones == 0
        finally:
            wrapped.leave(True)
    s.patcher.model_options["transformer_options"]["patches_replace"].pop("attn2")
    hooks = guided_hooks(r.host, p, SamplingHooks([guidance_for(s.unet)]))
    hooks.enter()
    try:
        assert s.model.forge_objects.unet is s.patcher and s.patcher.clones == 0
    finally:
        hooks.leave(True)


def test_the_patcher_familys_messages_reach_the_console(forge, capsys):
    """The probe and guidance say what they leave out or add through the host's say_once: on the patcher family
    it must print (the pure PatcherHost, first in the MRO, only declares it)."""
    host, _ = forge
    host.say_once("a note that must be seen (forge host test)")
    assert "a note that must be seen (forge host test)" in capsys.readouterr().out
