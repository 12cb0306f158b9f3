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

from ..layout import tokens
from .console import say_once
from .forge_replace import ReplacedAttentionGuidance, attn2_modules, guide_replaced_attention  # noqa: F401

NAME = "forge"


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
        say_once(f"the layout probe leaves out attn2 replace patches of {len(dropped)} block(s) "
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
