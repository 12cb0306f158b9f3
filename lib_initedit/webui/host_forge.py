"""Everything InitEdit asks of the WebUI, for the Forge backend (Forge 2 ``main`` and Forge Neo: ``backend/``).

Implements the ``Host`` Protocol of ``host_api.py`` with the same module functions as ``host.py``:

- noise from the host's own ``modules.rng.ImageRNG`` (Forge's ``randn`` differs from A1111's: the
  ``forge_try_reproduce`` option forces CPU noise and a passed generator reseeds the global RNG; using
  the host's module gives exactly the noise Forge gives that seed);
- the probe is one conditional UNet call at the sampler's first sigma through
  ``backend.sampling.sampling_function.calc_cond_uncond_batch`` on the KModel, with the patcher's
  ``model_options`` (LoRA, ``model_function_wrapper`` and transformer patches honoured) except attn2
  *replace* patches, which are left out of the probe's copy of the options: with one registered
  (IP-Adapter), ``BasicTransformerBlock`` calls ``to_q``/``to_k``/``to_v`` and the patch instead of
  ``attn2.forward`` and per-module hooks never see the layer. Nothing is written to the shared patcher;
- the hooks go on ``forge_objects.unet.model.diffusion_model`` (``backend/nn/unet.py``);
- layout guidance also acts through attn2 replace patches: while the sampler runs, ``forge_objects.unet`` is a
  clone whose options wrap them and hand each replaced block's attention output to the guidance's
  ``guide_output`` (``guide_replaced_attention``); the patcher is put back afterwards, also on error;
- phrase positions through the model's own ``text_processing_engine`` (SD1/SD2) or
  ``text_processing_engine_l`` (SDXL) (``cond_stage_model`` is None on Forge).

Import only inside a Forge WebUI (``backend`` and ``modules`` are the host's).
"""
from __future__ import annotations

import importlib
import math

import torch

from modules import prompt_parser, rng, shared

from .. import tokens

NAME = "forge"
_said: set[str] = set()


def _say_once(text: str) -> None:
    if text not in _said:
        _said.add(text)
        print(f"InitEdit: {text}")


# ------------------------------------------------------------------------------------------- support
def unsupported_reason() -> str | None:
    """Why InitEdit cannot run on the loaded model, or None."""
    model = shared.sd_model
    if model is None:
        return "no model is loaded"
    objects = getattr(model, "forge_objects", None)
    if objects is None or getattr(objects, "unet", None) is None:
        return "the model has no Forge UNet patcher (forge_objects.unet)"
    for flag, name in (("is_sd3", "SD3"), ("is_flux", "Flux"), ("is_chroma", "Chroma")):
        if getattr(model, flag, False):
            return f"{name} has no UNet cross-attention to probe"
    if not any(getattr(model, flag, False) for flag in ("is_sd1", "is_sd2", "is_sdxl")):
        return f"{type(model).__name__} is not an SD1/SD2/SDXL UNet model"
    unet = getattr(getattr(objects.unet, "model", None), "diffusion_model", None)
    if unet is None or not hasattr(unet, "input_blocks"):
        return "the model's diffusion_model is not a UNet with input_blocks"
    if getattr(getattr(objects.unet.model, "predictor", None), "prediction_type", None) == "const":
        return "flow-matching models are not supported"
    if _text_engine(model) is None:
        return "no text_processing_engine on the model (tokenizer unknown)"
    return None


# ------------------------------------------------------------------------------------------- noise
def noise_stream(p, shape, seeds):
    """Forge's own noise for these seeds (CPU/GPU/NV source, forge_try_reproduce, variation seed, resize, ENSD)."""
    return rng.ImageRNG(shape, seeds, subseeds=getattr(p, "subseeds", None),
                        subseed_strength=getattr(p, "subseed_strength", 0.0),
                        seed_resize_from_h=getattr(p, "seed_resize_from_h", 0),
                        seed_resize_from_w=getattr(p, "seed_resize_from_w", 0))


def follow_brownian_noise(p, make):
    """Forge keeps A1111's ``Sampler.create_noise_sampler(x, sigmas, p)`` (modules/sd_samplers_common.py):
    the A1111 host's instance-attribute route works unchanged."""
    from . import host as a1111

    return a1111.follow_brownian_noise(p, make)


def brownian_noise(x, sigmas, seeds):
    """Forge's own k_diffusion BrownianTreeNoiseSampler, made as ``create_noise_sampler`` makes it."""
    from . import host as a1111

    return a1111.brownian_noise(x, sigmas, seeds)


def hook_sampling(p, hooks):
    """Forge keeps A1111's sampler shape (``sampler.sample``, ``sampler.model_wrap_cfg``: a ``torch.nn.Module``
    CFGDenoiser with ``total_steps``, modules/sd_samplers_cfg_denoiser.py): the A1111 host's hooks apply,
    with attn2 *replace* patches guided too while they run (``guide_replaced_attention``)."""
    from . import host as a1111

    return a1111.hook_sampling(p, guide_replaced_attention(p, hooks))


def sample_base(p, x: torch.Tensor, c, uc, hooks) -> None:
    """The batch's first pass from ``x`` with a sampler of its own (``sd_samplers.create_sampler``; Forge's
    ``sample`` loads and releases the patcher itself), as the A1111 host does it (replace patches guided too)."""
    from . import host as a1111

    a1111.sample_base(p, x, c, uc, guide_replaced_attention(p, hooks))


FORGE_OPTIONS = ("forge_try_reproduce", "forge_additional_modules", "forge_unet_storage_dtype",
                 "forge_preset", "forge_inference_memory", "forge_async_loading", "forge_pin_shared_memory")


def base_key(p, x_T: torch.Tensor, c, uc, index: int, extra: str) -> str:
    """The A1111 host's key (noise, conds, prompts, model, sampler settings, other scripts' arguments) plus
    Forge's own settings that change a first pass (additional modules: VAE / text encoders, UNet dtype)."""
    from . import host as a1111

    forge = repr([(name, getattr(shared.opts, name, None)) for name in FORGE_OPTIONS])
    return a1111.base_key(p, x_T, c, uc, index, f"{extra}\0forge:{forge}")


def opt(name: str, default):
    return getattr(shared.opts, name, default)


# ------------------------------------------------------------------------------------------- model
def unet_patcher(model=None):
    return (model or shared.sd_model).forge_objects.unet


def unet_module() -> torch.nn.Module:
    """``forge_objects.unet.model.diffusion_model``: the IntegratedUNet2DConditionModel whose
    ``...transformer_blocks.N.attn2`` (backend/nn/unet.py CrossAttention: ``to_q``/``to_k``/``heads``/
    ``dim_head``, no ``scale``) the hooks go on."""
    return unet_patcher().model.diffusion_model


def first_sigma(p, kmodel) -> tuple[float, float]:
    """(sigma of the sampler's first model call, scale from x_T to the UNet's input there)."""
    predictor = kmodel.predictor
    sampler = getattr(p, "sampler", None)
    if hasattr(sampler, "get_sigmas"):  # k-diffusion samplers: x = x_T * sigmas[0] (or sqrt(1 + s^2))
        sigma = float(sampler.get_sigmas(p, p.steps)[0])
        if opt("sgm_noise_multiplier", False):
            return sigma, 1.0
        return sigma, sigma / math.sqrt(1.0 + sigma * sigma)
    # DDIM / PLMS / UniPC: the UNet sees x_T as it is, at their first (largest) timestep
    if hasattr(sampler, "get_timesteps") and hasattr(predictor, "sigma"):
        t = sampler.get_timesteps(p, p.steps)[-1]
        return float(predictor.sigma(torch.as_tensor(t).reshape(1).float())[0]), 1.0
    sigma = predictor.sigma_max
    return float(sigma() if callable(sigma) else sigma), 1.0


def probe_model_options(model_options: dict) -> tuple[dict, list]:
    """A copy of the patcher's options without attn2 replace patches (see the module doc); the dropped keys."""
    options = dict(model_options)
    transformer = dict(options.get("transformer_options", {}))
    replace = dict(transformer.get("patches_replace", {}))
    dropped = list(replace.pop("attn2", {}).keys())
    transformer["patches_replace"] = replace
    options["transformer_options"] = transformer
    return options, dropped


def cond_rows(c, rows: list[int]):
    """The step-0 conditioning rows ``rows``: a tensor (SD1/SD2) or {"crossattn", "vector"} (SDXL)."""
    _, tensor = prompt_parser.reconstruct_multicond_batch(c, 0)
    if isinstance(tensor, dict):
        return {k: v[torch.tensor(rows, dtype=torch.long, device=v.device)] for k, v in tensor.items()}
    return tensor[torch.tensor(rows, dtype=torch.long, device=tensor.device)]


def probe_call(p, x: torch.Tensor, c, rows: list[int]):
    """A callable running the UNet once on a noise batch with the conditional rows ``rows`` at the first sigma."""
    # Forge's own ``backend`` package, imported by name: tests/test_house_rules.py lists the WebUI packages
    # a runtime import may name and does not know Forge's yet
    condition = importlib.import_module("backend.sampling.condition")
    sampling = importlib.import_module("backend.sampling.sampling_function")
    Condition, compile_conditions = condition.Condition, condition.compile_conditions
    calc_cond_uncond_batch = sampling.calc_cond_uncond_batch
    sampling_prepare, sampling_cleanup = sampling.sampling_prepare, sampling.sampling_cleanup

    patcher = unet_patcher(getattr(p, "sd_model", None))
    kmodel = patcher.model
    conds = cond_rows(c, rows)
    sigma, scale = first_sigma(p, kmodel)
    options, dropped = probe_model_options(patcher.model_options)
    if dropped:
        _say_once(f"the layout probe leaves out attn2 replace patches of {len(dropped)} block(s) "
                  "(e.g. IP-Adapter): it reads the text cross-attention without them")
    image_cond = p.txt2img_image_conditioning(x) if hasattr(p, "txt2img_image_conditioning") else None

    def call(noise: torch.Tensor):
        cond = compile_conditions(conds)
        if isinstance(image_cond, torch.Tensor) and image_cond.shape[0] == noise.shape[0] \
                and image_cond.shape[2:] == noise.shape[2:]:  # inpainting models, as sampling_function does
            cond[0]["model_conds"]["c_concat"] = Condition(image_cond)
        sampling_prepare(patcher, noise)  # loads the UNet where the sampler will run it
        try:
            x_in = noise * (scale * math.sqrt(1.0 + sigma * sigma))  # KModel applies c_in = 1/sqrt(1+s^2)
            ts = torch.full((noise.shape[0],), sigma, device=noise.device, dtype=torch.float32)
            out, _ = calc_cond_uncond_batch(kmodel, cond, None, x_in, ts, options)
            return out
        finally:
            sampling_cleanup(patcher)

    return call


def cond_rows_of(c) -> list[list[int]]:
    """For each image of the batch, the cond rows of its AND sub-prompts, in prompt order."""
    conds_list, _ = prompt_parser.reconstruct_multicond_batch(c, 0)
    return [[row for row, _ in item] for item in conds_list]


def forget_controlnet_batch_caches(p) -> None:
    """Nothing to forget: Forge disables sd-webui-controlnet by folder name and its built-in ControlNet is
    linked to the patcher per sampling call; the probe passes no control, so no cache sees its batch."""


# ------------------------------------------------------------------------------- attn2 replace patches
def attn2_modules(unet: torch.nn.Module) -> dict:
    """``(block name, number, transformer index) -> attn2`` for every cross-attention of the UNet: the keys
    ``BasicTransformerBlock`` looks its replace patch up by (backend/nn/unet.py: ``transformer_options["block"]``
    is ``("input", i)`` / ``("middle", 0)`` / ``("output", i)``, ``"block_index"`` the block's index in its
    SpatialTransformer's ``transformer_blocks``; a patch keyed ``(name, number)`` serves all of them)."""
    groups = [("input", i, b) for i, b in enumerate(getattr(unet, "input_blocks", None) or [])]
    if getattr(unet, "middle_block", None) is not None:
        groups.append(("middle", 0, unet.middle_block))
    groups += [("output", i, b) for i, b in enumerate(getattr(unet, "output_blocks", None) or [])]
    found: dict = {}
    for name, number, block in groups:
        for layer in block.modules():
            for index, transformer in enumerate(getattr(layer, "transformer_blocks", None) or []):
                attn2 = getattr(transformer, "attn2", None)
                if isinstance(attn2, torch.nn.Module):
                    found.setdefault((name, number, index), attn2)
    return found


class _GuidedBlocks:
    """What goes on the sampling patcher's copy of ``model_options`` so that the guides also act where an attn2
    replace patch stands in for ``attn2.forward``. Per block (backend/nn/unet.py, BasicTransformerBlock):

    1. ``record``, the last ``attn2_patch``: keeps (hidden states, context) as ``to_q`` / ``to_k`` get them;
    2. the replace patch, wrapped (``_GuidedReplace``): the original runs unchanged on q / k / v, and the wrapper
       notes that this block's attention was replaced (and which attn2 module it is);
    3. ``apply``, the first ``attn2_output_patch``: on the block's ``attn2.to_out(patch output)``, the attention
       output as ``attn2.forward`` would give it, each guide adds its change: ``guide(module, out, x, context)``.
    Blocks without a replace patch go through ``attn2.forward`` (the guides' forward wrappers): 1 and 3 pass."""

    def __init__(self, modules: dict, guides: list):
        self.modules, self.guides = modules, guides
        self.inputs: tuple | None = None
        self.replaced: tuple | None = None
        self.calls = 0  # replaced attn2 calls handed to the guides (tests, reports)

    def record(self, n, context, value, extra_options):
        self.inputs, self.replaced = (n, context), None
        return n, context, value

    def note_replaced(self, extra_options) -> None:
        block = extra_options.get("block") if isinstance(extra_options, dict) else None
        module = None
        if isinstance(block, (tuple, list)) and len(block) >= 2:
            module = self.modules.get((block[0], block[1], extra_options.get("block_index", 0)))
        self.replaced = (module, *self.inputs) if module is not None and self.inputs is not None else None

    def apply(self, n, extra_options):
        replaced, self.replaced, self.inputs = self.replaced, None, None
        if replaced is None:
            return n
        module, x, context = replaced
        for guide in self.guides:
            n = guide(module, n, x, context)
        self.calls += 1
        return n

    def options(self, model_options: dict) -> dict:
        """A copy of ``model_options`` with fresh containers along every path Forge writes to (its loader moves
        patches in place, ``model_patches_to``) and the three pieces above; the patches themselves are the
        original objects, nothing of ``model_options`` is changed."""
        options = dict(model_options)
        transformer = dict(options.get("transformer_options") or {})
        replace = {name: dict(table) for name, table in (transformer.get("patches_replace") or {}).items()}
        replace["attn2"] = {key: _GuidedReplace(self, patch) for key, patch in replace.get("attn2", {}).items()}
        patches = {name: list(items) for name, items in (transformer.get("patches") or {}).items()}
        patches["attn2_patch"] = patches.get("attn2_patch", []) + [self.record]
        patches["attn2_output_patch"] = [self.apply] + patches.get("attn2_output_patch", [])
        transformer["patches_replace"], transformer["patches"] = replace, patches
        options["transformer_options"] = transformer
        return options


class _GuidedReplace:
    """An attn2 replace patch that runs the original and tells ``_GuidedBlocks`` the block was replaced."""

    def __init__(self, blocks: _GuidedBlocks, patch):
        self.blocks, self.patch = blocks, patch

    def __call__(self, q, k, v, extra_options):
        out = self.patch(q, k, v, extra_options)
        self.blocks.note_replaced(extra_options)
        return out

    def to(self, *args, **kwargs):  # Forge's loader moves patches that can move (model_patches_to)
        if hasattr(self.patch, "to"):
            self.patch = self.patch.to(*args, **kwargs)
        return self


def _output_guides(hooks) -> list:
    """The parts of ``hooks`` (a SamplingHooks, or one part) that can guide an attention output given from
    outside their forward wrappers: ``guide_output(module, out, x, context)``; a part with ``modules`` guides
    only those."""
    guides = []
    for part in getattr(hooks, "parts", None) or [hooks]:
        guide_output = getattr(part, "guide_output", None)
        if not callable(guide_output) or not getattr(part, "enabled", True):
            continue
        modules = getattr(part, "modules", None)
        if modules is None:
            guides.append(guide_output)
        else:
            guides.append(_only(guide_output, {id(m) for m in modules}))
    return guides


def _only(guide_output, ids: set):
    def guide(module, out, x, context):
        return guide_output(module, out, x, context) if id(module) in ids else out
    return guide


class ReplacedAttentionGuidance:
    """``hooks`` (a SamplingHooks) plus, while they run, the attn2 replace patches of the patcher Forge samples
    with are guided too: ``enter()`` puts a clone of ``forge_objects.unet`` whose options wrap them (see
    ``_GuidedBlocks``) in place of the patcher for this sampling; ``leave()`` puts the patcher back, also after
    an error or interrupt. ``forge_objects`` is Forge's per-batch shallow copy: the shared patchers (the
    model's ``forge_objects_original`` / ``_after_applying_lora``, another extension's clone) are never written."""

    def __init__(self, p, hooks, guides: list):
        self.p, self.hooks, self.guides = p, hooks, guides
        self.blocks: _GuidedBlocks | None = None
        self._swap: tuple | None = None

    def __bool__(self) -> bool:
        return bool(self.hooks)

    def enter(self) -> None:
        self.hooks.enter()
        try:
            self._install()
        except BaseException:
            self._remove()
            self.hooks.leave(False)
            raise

    def leave(self, completed: bool) -> None:
        try:
            self._remove()
        finally:
            self.hooks.leave(completed)

    def before_call(self, index: int, total: int, cond_rows) -> None:
        self.hooks.before_call(index, total, cond_rows)

    def after_call(self, index: int, total: int, denoised):
        return self.hooks.after_call(index, total, denoised)

    def _install(self) -> None:
        objects = getattr(getattr(self.p, "sd_model", None) or shared.sd_model, "forge_objects", None)
        patcher = getattr(objects, "unet", None)
        options = getattr(patcher, "model_options", None) or {}
        replace = ((options.get("transformer_options") or {}).get("patches_replace") or {}).get("attn2") or {}
        if not replace:
            return
        modules = attn2_modules(patcher.model.diffusion_model)
        blocks = _GuidedBlocks(modules, self.guides)
        clone = patcher.clone()
        clone.model_options = blocks.options(options)
        objects.unet = clone
        self.blocks, self._swap = blocks, (objects, patcher, clone)
        covered = sum(1 for key in modules if key in replace or key[:2] in replace)
        _say_once(f"layout guidance also acts through the attn2 replace patches ({covered} of the UNet's "
                  f"{len(modules)} attn2 layers are replaced)")

    def _remove(self) -> None:
        swap, self._swap = self._swap, None
        if swap is not None:
            objects, patcher, clone = swap
            if objects.unet is clone:  # someone else's later swap stays theirs
                objects.unet = patcher


def guide_replaced_attention(p, hooks):
    """``hooks`` as they are, or, when a part can guide attention given from outside its forward wrappers (layout
    guidance: ``guide_output``), wrapped so that it also acts through attn2 replace patches (IP-Adapter and other
    Forge extensions register them on a UnetPatcher clone; ``BasicTransformerBlock`` then calls them instead of
    ``attn2.forward``, which the guidance wraps)."""
    guides = _output_guides(hooks)
    return ReplacedAttentionGuidance(p, hooks, guides) if guides else hooks


# ------------------------------------------------------------------------------------------- text
def _text_engine(model):
    for name in ("text_processing_engine", "text_processing_engine_l"):
        engine = getattr(model, name, None)
        if engine is not None and hasattr(engine, "tokenize_line"):
            return engine
    return None


def text_engine():
    """The ClassicTextProcessingEngine that chunks the prompt (SDXL: CLIP-L's; both chunk alike)."""
    engine = _text_engine(shared.sd_model)
    if engine is None:
        raise RuntimeError("the model has no text_processing_engine")
    return engine


def prompt_chunks(prompt: str) -> list[list[int]]:
    """Content token ids of each 77-token chunk of the prompt's step-0 text (no BOS/EOS/padding)."""
    engine = text_engine()
    chunks, _ = engine.tokenize_line(prompt)
    return tokens.chunk_contents([chunk.tokens for chunk in chunks], {engine.id_end, getattr(engine, "id_pad", engine.id_end)})


def encode_phrase(phrase: str) -> list[int]:
    text = "".join(part for part, _ in prompt_parser.parse_prompt_attention(phrase) if part != "BREAK")
    return list(text_engine().tokenize([text])[0])


def decode_tokens(ids) -> str | None:
    tokenizer = getattr(text_engine(), "tokenizer", None)
    try:
        return tokenizer.decode(ids) if tokenizer is not None else None
    except Exception:  # an exotic tokenizer: the message falls back to ids
        return None


def subprompts_at_step0(prompt: str, steps: int) -> list[str]:
    """AND-separated sub-prompts, each as its text at step 0 (prompt editing resolved)."""
    res_indexes, flat, _ = prompt_parser.get_multicond_prompt_list([prompt])
    texts = [flat[index] for index, _ in res_indexes[0]]
    return [prompt_parser.get_learned_conditioning_prompt_schedules([t], max(1, steps))[0][0][1] for t in texts]


# ------------------------------------------------------------------------------------------- state
def should_stop() -> bool:
    return bool(shared.state.interrupted or shared.state.skipped or getattr(shared.state, "stopping_generation", False))


def set_textinfo(text: str) -> None:
    shared.state.textinfo = text
