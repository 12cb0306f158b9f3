"""Everything InitEdit asks of the WebUI, for the ``ldm_patched`` Forge line: reForge and Forge Classic.

Implements the ``Host`` Protocol of ``host_api.py`` with the same module functions as ``host.py``. These
WebUIs keep A1111's processing, samplers and text embedders (``modules/sd_samplers_*``, ``sd_hijack_clip``)
and run the UNet through ComfyUI's ``ldm_patched`` (``p.sd_model.forge_objects.unet``: a ``UnetPatcher``).
So most functions are the A1111 host's; what differs:

- the probe is one conditional UNet call at the sampler's first sigma through
  ``ldm_patched.modules.samplers.calc_cond_batch`` (reForge; Forge Classic: ``calc_cond_uncond_batch``) on
  the patcher's ``BaseModel``, with the ``model_options`` of a **clone** of the patcher (LoRA,
  ``model_function_wrapper``, attn2/attn1 patches honoured) less attn2 *replace* patches: with one
  registered (IP-Adapter), ``BasicTransformerBlock`` calls ``to_q``/``to_k``/``to_v`` and the patch
  instead of ``attn2.forward`` and per-module hooks never see the layer. Nothing is written to the
  shared patcher; the clone is dropped after the call. Conditioning as the sampler builds it
  (``modules_forge.forge_sampler.cond_from_a1111_to_patched_ldm``);
- ``BaseModel.apply_model`` takes sigma and applies ``c_in = 1/sqrt(1 + sigma^2)`` itself, so the probe
  gives it ``x_T * sigma0`` (k-diffusion; ``x_T * sqrt(1 + sigma0^2)`` with *SGM noise multiplier*), or for
  DDIM / PLMS / UniPC (``CFGDenoiserTimesteps``, ``classic_ddim_eps_estimation``) the sigma of their first
  timestep and ``x_T * sqrt(1 + sigma^2)``, which the UNet sees as x_T;
- the SDE samplers' Brownian noise comes from the k-diffusion the WebUI samples with (reForge's
  ``sd_sampling`` option: its own ``k_diff`` or ``ldm_patched.k_diffusion``; Forge Classic: ``k_diffusion``);
- the hooks go on ``forge_objects.unet.model.diffusion_model`` (``ldm_patched/ldm/modules`` UNet whose
  ``attn2`` are ``CrossAttention`` with ``to_q``/``to_k``/``heads``/``dim_head`` and no ``scale``);
- layout guidance also acts where an attn2 replace patch bypasses ``attn2.forward`` (Forge 2's
  ``forge_replace.guide_replaced_attention``: the block structure and patch keys are the same);
- ``unsupported_reason`` knows these models (SD1/SD2/SDXL with an EPS or V UNet) instead of refusing
  every model with ``forge_objects`` as ``host.py`` does.

Noise is the host's own ``modules.rng`` (``host.noise_stream``); phrase positions go through the model's
A1111-style embedders (``cond_stage_model`` / ``conditioner.embedders``), which reForge keeps with the
ldm_patched tokenizers swapped in (``modules_forge/forge_loader.py``).

Import only inside such a WebUI (``ldm_patched`` / ``modules_forge`` are imported by name when called).
"""
from __future__ import annotations

import math
from importlib import import_module

import torch

from modules import shared

from . import host as a1111
from .console import say_once
from .forge_replace import guide_replaced_attention
from .host_forge import cond_rows, probe_model_options

NAME = "ldm_patched"

# the A1111 host's functions that hold here unchanged (A1111's sampler shape, rng and text embedders)
noise_stream = a1111.noise_stream
follow_brownian_noise = a1111.follow_brownian_noise
should_stop = a1111.should_stop
set_textinfo = a1111.set_textinfo
opt = a1111.opt
text_model = a1111.text_model
prompt_chunks = a1111.prompt_chunks
encode_phrase = a1111.encode_phrase
decode_tokens = a1111.decode_tokens
subprompts_at_step0 = a1111.subprompts_at_step0
cond_rows_of = a1111.cond_rows_of

SUPPORTED_MODEL_TYPES = ("EPS", "V_PREDICTION")


# ------------------------------------------------------------------------------------------- support
def unsupported_reason() -> str | None:
    """Why InitEdit cannot run on the loaded model, or None."""
    model = shared.sd_model
    if model is None:
        return "no model is loaded"
    objects = getattr(model, "forge_objects", None)
    patcher = getattr(objects, "unet", None)
    if patcher is None:
        return "the model has no UNet patcher (forge_objects.unet)"
    for flag, name in (("is_sd3", "SD3"), ("is_flux", "Flux"), ("is_chroma", "Chroma")):
        if getattr(model, flag, False):
            return f"{name} has no UNet cross-attention to probe"
    if not any(getattr(model, flag, False) for flag in ("is_sd1", "is_sd2", "is_sdxl")):
        return f"{type(model).__name__} is not an SD1/SD2/SDXL UNet model"
    base = getattr(patcher, "model", None)
    unet = getattr(base, "diffusion_model", None)
    if unet is None or not hasattr(unet, "input_blocks"):
        return "the model's diffusion_model is not a UNet with input_blocks"
    kind = getattr(getattr(base, "model_type", None), "name", None)
    if kind is not None and kind not in SUPPORTED_MODEL_TYPES:
        return f"{kind} models are not supported (only EPS and v-prediction UNets)"
    try:
        text_model()
    except AttributeError:
        return "no text embedder on the model (tokenizer unknown)"
    return None


# ------------------------------------------------------------------------------------------- noise
def brownian_noise(x, sigmas, seeds):
    """The SDE samplers' Brownian noise as ``Sampler.create_noise_sampler`` makes it, from the k-diffusion the
    WebUI samples with: reForge's ``sd_sampling`` option picks ``k_diff.k_diffusion`` ("A1111") or
    ``ldm_patched.k_diffusion``; Forge Classic has no such option and imports ``ldm_patched/k_diffusion`` as the
    top-level ``k_diffusion`` (``modules/paths.py`` puts ``ldm_patched`` on ``sys.path``)."""
    choice = opt("sd_sampling", None)
    if choice == "A1111":
        names = ("k_diff.k_diffusion.sampling", "ldm_patched.k_diffusion.sampling")
    elif choice is not None:
        names = ("ldm_patched.k_diffusion.sampling",)
    else:
        names = ("k_diffusion.sampling", "ldm_patched.k_diffusion.sampling")
    sampling = None
    for name in names:
        try:
            sampling = import_module(name)
            break
        except ImportError:
            continue
    if sampling is None:
        raise ImportError(f"no k-diffusion sampling module among {', '.join(names)}")
    sigma_min, sigma_max = sigmas[sigmas > 0].min(), sigmas.max()
    return sampling.BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=list(seeds))


# ------------------------------------------------------------------------------------------- sampling
def hook_sampling(p, hooks):
    """The A1111 host's hooks (reForge keeps ``sampler.sample`` and the ``CFGDenoiser`` module with
    ``total_steps``), with attn2 *replace* patches guided too while they run: ldm_patched's
    ``BasicTransformerBlock`` has Forge 2's ``attn2_patch`` / ``patches_replace["attn2"]`` /
    ``attn2_output_patch`` sequence and ``transformer_options["block"]`` / ``"block_index"`` keys, and the
    sampler reads ``sd_model.forge_objects.unet`` (a per-batch shallow copy) at every call, so
    ``forge_replace.guide_replaced_attention`` (a guided clone in its place while the sampler runs, put back in
    finally) applies as it is."""
    return a1111.hook_sampling(p, guide_replaced_attention(p, hooks))


def sample_base(p, x: torch.Tensor, c, uc, hooks) -> None:
    """The batch's first pass from ``x`` with a sampler of its own, as the A1111 host does it (replace patches
    guided too)."""
    a1111.sample_base(p, x, c, uc, guide_replaced_attention(p, hooks))


# ------------------------------------------------------------------------------------------- keep
LDM_PATCHED_OPTIONS = ("sd_sampling", "epsilon_scaling_enabled", "epsilon_scaling_factor", "dynamic_clip_skip_enabled",
                       "sd_noise_schedule", "forge_unet_storage_dtype", "forge_try_reproduce")


def base_key(p, x_T: torch.Tensor, c, uc, index: int, extra: str) -> str:
    """The A1111 host's key plus the settings of this line that change a first pass (the k-diffusion in use,
    epsilon scaling, ...)."""
    own = repr([(name, getattr(shared.opts, name, None)) for name in LDM_PATCHED_OPTIONS])
    return a1111.base_key(p, x_T, c, uc, index, f"{extra}\0ldm_patched:{own}")


# ------------------------------------------------------------------------------------------- model
def unet_patcher(model=None):
    return (model or shared.sd_model).forge_objects.unet


def unet_module() -> torch.nn.Module:
    """``forge_objects.unet.model.diffusion_model``: the ldm_patched UNetModel whose
    ``...transformer_blocks.N.attn2`` the hooks go on (``sd_model.model.diffusion_model`` is the same object)."""
    return unet_patcher().model.diffusion_model


def _timestep_sigma(t: float) -> float:
    """The sigma ``CFGDenoiserTimesteps`` gives the model for timestep ``t`` (``classic_ddim_eps_estimation``)."""
    alphas = shared.sd_model.alphas_cumprod
    a = float(alphas[min(max(int(round(t)), 0), len(alphas) - 1)])
    return math.sqrt((1.0 - a) / a)


def first_sigma(p) -> tuple[float, float]:
    """(sigma of the sampler's first model call, scale from x_T to the UNet's input ``x_in / sqrt(1 + sigma^2)``)."""
    sampler = getattr(p, "sampler", None)
    if hasattr(sampler, "get_sigmas"):  # k-diffusion samplers: x = x_T * sigmas[0] (or sqrt(1 + s^2))
        sigma = float(sampler.get_sigmas(p, p.steps)[0])
        if opt("sgm_noise_multiplier", False):
            return sigma, 1.0
        return sigma, sigma / math.sqrt(1.0 + sigma * sigma)
    # DDIM / PLMS / UniPC: the UNet sees x_T as it is, at their first timestep (UniPC: 999, host.first_timestep)
    t, scale = a1111.first_timestep(p)
    return _timestep_sigma(t), scale


def _calc_cond(samplers):
    """``calc_cond_batch(model, [cond, None], ...)`` (reForge) or ``calc_cond_uncond_batch`` (Forge Classic):
    the conditional output."""
    if hasattr(samplers, "calc_cond_batch"):
        return lambda model, cond, x_in, ts, options: samplers.calc_cond_batch(model, [cond, None], x_in, ts, options)[0]
    return lambda model, cond, x_in, ts, options: samplers.calc_cond_uncond_batch(model, cond, None, x_in, ts, options)[0]


def probe_call(p, x: torch.Tensor, c, rows: list[int]):
    """A callable running the UNet once on a noise batch with the conditional rows ``rows`` at the first sigma."""
    samplers = import_module("ldm_patched.modules.samplers")
    forge_sampler = import_module("modules_forge.forge_sampler")
    CONDRegular = import_module("ldm_patched.modules.conds").CONDRegular
    calc = _calc_cond(samplers)

    patcher = unet_patcher(getattr(p, "sd_model", None))
    conds = cond_rows(c, rows)
    sigma, scale = first_sigma(p)
    image_cond = p.txt2img_image_conditioning(x) if hasattr(p, "txt2img_image_conditioning") else None
    extra_concat = getattr(patcher, "extra_concat_condition", None)
    if extra_concat is not None:
        image_cond = extra_concat

    def call(noise: torch.Tensor):
        probe_patcher = patcher.clone()  # the probe's own options; the shared patcher is never written to
        options, dropped = probe_model_options(probe_patcher.model_options)
        probe_patcher.model_options = options
        if dropped:
            say_once(f"the layout probe leaves out attn2 replace patches of {len(dropped)} block(s) "
                      "(e.g. IP-Adapter): it reads the text cross-attention without them")
        cond = forge_sampler.cond_from_a1111_to_patched_ldm(conds)
        if isinstance(image_cond, torch.Tensor) and image_cond.shape[0] == noise.shape[0] \
                and image_cond.shape[2:] == noise.shape[2:]:  # inpainting models, as forge_sample does
            for item in cond:
                item["model_conds"]["c_concat"] = CONDRegular(image_cond)
        forge_sampler.sampling_prepare(patcher, noise)  # loads the UNet where the sampler will run it
        try:
            x_in = noise * (scale * math.sqrt(1.0 + sigma * sigma))  # BaseModel applies c_in = 1/sqrt(1+s^2)
            ts = torch.full((noise.shape[0],), sigma, device=noise.device, dtype=torch.float32)
            return calc(probe_patcher.model, cond, x_in, ts, options)
        finally:
            forge_sampler.sampling_cleanup(patcher)

    return call


def forget_controlnet_batch_caches(p) -> None:
    """reForge / Classic ship ControlNet built in (``modules_forge/controlnet.py``), linked to the patcher per
    sampling call; the probe passes no ``control``, so no cache sees its batch. sd-webui-controlnet, if
    installed anyway, is handled as on A1111."""
    a1111.forget_controlnet_batch_caches(p)
