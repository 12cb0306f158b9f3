"""Everything InitEdit asks of the WebUI, in one place: noise source, model, tokenizer, conds, state.

A1111 1.6-1.10 (ldm/sgm UNets). Forge would get its own module beside this one.
"""
from __future__ import annotations

import math

import torch

from modules import devices, prompt_parser, rng, shared


def unsupported_reason() -> str | None:
    """Why InitEdit cannot run on the loaded model, or None."""
    model = shared.sd_model
    if model is None:
        return "no model is loaded"
    if getattr(model, "is_sd3", False):
        return "SD3 has no ldm/sgm UNet"
    if hasattr(model, "forge_objects"):
        return "Forge's UNet patcher is not supported yet"
    try:
        from modules import sd_unet

        if getattr(sd_unet, "current_unet", None) is not None:
            return f"the UNet is replaced by {type(sd_unet.current_unet).__name__} (e.g. TensorRT)"
    except ImportError:
        pass
    if not hasattr(getattr(model, "model", None), "diffusion_model"):
        return "the model has no diffusion_model UNet"
    return None


def noise_stream(p, shape, seeds):
    """The WebUI's own noise for these seeds (CPU/GPU/NV source, variation seed, resize, ENSD)."""
    return rng.ImageRNG(shape, seeds, subseeds=getattr(p, "subseeds", None),
                        subseed_strength=getattr(p, "subseed_strength", 0.0),
                        seed_resize_from_h=getattr(p, "seed_resize_from_h", 0),
                        seed_resize_from_w=getattr(p, "seed_resize_from_w", 0))


def follow_brownian_noise(p, make):
    """SDE samplers (DPM++ SDE, 2M SDE, 2M SDE Heun, 3M SDE) ask ``p.sampler.create_noise_sampler(x, sigmas,
    p)`` once per batch for their Brownian noise; an instance attribute on this batch's sampler routes that
    through ``make``. It removes itself on first use; the returned function removes it otherwise."""
    sampler = getattr(p, "sampler", None)
    original = getattr(sampler, "create_noise_sampler", None)
    if original is None:
        return lambda: None
    had_own = "create_noise_sampler" in vars(sampler)

    def restore():
        if vars(sampler).get("create_noise_sampler") is create:
            if had_own:
                sampler.create_noise_sampler = original
            else:
                del sampler.create_noise_sampler

    def create(x, sigmas, p_):
        restore()
        base = original(x, sigmas, p_)
        return make(base, x, sigmas) or base

    sampler.create_noise_sampler = create
    return restore


def brownian_noise(x, sigmas, seeds):
    """The WebUI's Brownian noise for these seeds, made as ``create_noise_sampler`` makes it."""
    from modules.sd_samplers_kdiffusion import k_diffusion  # the WebUI's own k-diffusion

    sigma_min, sigma_max = sigmas[sigmas > 0].min(), sigmas.max()
    return k_diffusion.sampling.BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=list(seeds))


def unet_module() -> torch.nn.Module:
    return shared.sd_model.model.diffusion_model


def should_stop() -> bool:
    return bool(shared.state.interrupted or shared.state.skipped or getattr(shared.state, "stopping_generation", False))


def set_textinfo(text: str) -> None:
    shared.state.textinfo = text


def opt(name: str, default):
    return getattr(shared.opts, name, default)


def text_model():
    """The embedder whose ``tokenize_line`` builds the chunks (SDXL: CLIP-L; both encoders chunk alike)."""
    model = shared.sd_model
    if hasattr(model, "conditioner"):
        for embedder in model.conditioner.embedders:
            if hasattr(embedder, "tokenize_line"):
                return embedder
    return model.cond_stage_model


def prompt_chunks(prompt: str) -> list[list[int]]:
    """Content token ids of each 77-token chunk of the prompt's step-0 text (no BOS/EOS/padding)."""
    model = text_model()
    chunks, _ = model.tokenize_line(prompt)
    pad = {model.id_end, getattr(model, "id_pad", model.id_end)}
    out = []
    for chunk in chunks:
        tokens = list(chunk.tokens[1:-1])
        while tokens and tokens[-1] in pad:
            tokens.pop()
        out.append(tokens)
    return out


def encode_phrase(phrase: str) -> list[int]:
    text = "".join(part for part, _ in prompt_parser.parse_prompt_attention(phrase) if part != "BREAK")
    return list(text_model().tokenize([text])[0])


def decode_tokens(ids) -> str | None:
    model = text_model()
    tokenizer = getattr(getattr(model, "wrapped", None), "tokenizer", None)
    try:
        return tokenizer.decode(ids) if tokenizer is not None else None
    except Exception:  # an exotic tokenizer: the message falls back to ids
        return None


def subprompts_at_step0(prompt: str, steps: int) -> list[str]:
    """AND-separated sub-prompts, each as its text at step 0 (prompt editing resolved)."""
    res_indexes, flat, _ = prompt_parser.get_multicond_prompt_list([prompt])
    texts = [flat[index] for index, _ in res_indexes[0]]
    return [prompt_parser.get_learned_conditioning_prompt_schedules([t], max(1, steps))[0][0][1] for t in texts]


def first_timestep(p) -> tuple[float, float]:
    """(t, input scale) of the sampler's first model call on the initial noise."""
    sampler = getattr(p, "sampler", None)
    if hasattr(sampler, "get_timesteps"):  # DDIM / PLMS / UniPC start from x as it is
        return float(sampler.get_timesteps(p, p.steps)[-1]), 1.0
    alphas = shared.sd_model.alphas_cumprod
    t = len(alphas) - 1  # k-diffusion schedules start at sigma_max = sigma(t=999)
    if opt("sgm_noise_multiplier", False):
        return float(t), 1.0
    return float(t), math.sqrt(1.0 - float(alphas[-1]))  # x*sigma*c_in = x*sqrt(1-alpha_bar)


def probe_call(p, x: torch.Tensor, c, rows: list[int]):
    """A callable running the UNet once on a noise batch with the conditional rows ``rows`` at step 0."""
    _, tensor = prompt_parser.reconstruct_multicond_batch(c, 0)
    index = torch.tensor(rows, dtype=torch.long, device=devices.device)
    if isinstance(tensor, dict):
        cond_rows = {k: v[index.to(v.device)] for k, v in tensor.items()}
    else:
        cond_rows = tensor[index.to(tensor.device)]
    image_cond = p.txt2img_image_conditioning(x)
    if isinstance(cond_rows, dict):
        cond = {**cond_rows, "c_concat": [image_cond]}
    else:
        cond = {"c_crossattn": [cond_rows], "c_concat": [image_cond]}
    t, scale = first_timestep(p)

    def call(noise: torch.Tensor):
        ts = torch.full((noise.shape[0],), t, device=noise.device)
        return shared.sd_model.apply_model(noise * scale, ts, cond)

    return call


def cond_rows_of(c) -> list[list[int]]:
    """For each image of the batch, the cond rows of its AND sub-prompts, in prompt order."""
    conds_list, _ = prompt_parser.reconstruct_multicond_batch(c, 0)
    return [[row for row, _ in item] for item in conds_list]


def forget_controlnet_batch_caches(p) -> None:
    """sd-webui-controlnet caches encoded hints with the batch size of the first UNet call it sees; the
    probe (cond rows only) must not be that call, so make it recompute them (internal API of CN 1.1.x)."""
    scripts = getattr(getattr(p, "scripts", None), "alwayson_scripts", None) or []
    for script in scripts:
        for param in getattr(getattr(script, "latest_network", None), "control_params", None) or []:
            if hasattr(param, "used_hint_cond"):
                param.used_hint_cond = None
