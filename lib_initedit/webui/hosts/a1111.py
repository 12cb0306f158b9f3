"""The AUTOMATIC1111 host (1.6-1.10, ldm/sgm UNets): noise source, sampler hooks, model, probe, tokenizer, state.

The Forge lines keep A1111's processing, samplers and prompt parser, so their hosts derive from this one
(``patcher_family.WebUIPatcherHost``) and override what their patcher backend does differently.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from modules import devices, prompt_parser, rng, shared

from ...layout import tokens
from ...sampling_hooks import CallClock
from ..console import say_once
from . import cache_key
from .sampler_patches import call_level, context_rows, patch_once


class A1111Host:
    """Implements ``protocol.Host`` for A1111: hooks on the ldm/sgm UNet's modules, the CFG denoiser and the
    sampler of the batch, each per instance and undone after the batch."""

    name = "a1111"
    patch_once = staticmethod(patch_once)

    def say_once(self, message: str) -> None:
        say_once(message)

    def unsupported_reason(self, feature: str = "layout") -> str | None:
        """Why ``feature`` ("reroll" or "layout", see the Protocol) cannot run on the loaded model, or None.
        Reroll and keep act on the sampler's latent and denoised prediction: SD3 (16 channels, flow matching)
        too. Layout needs the ldm/sgm UNet's cross-attention."""
        model = shared.sd_model
        if model is None:
            return "no model is loaded"
        if feature != "reroll" and getattr(model, "is_sd3", False):
            return "SD3 (an MMDiT) has no ldm/sgm UNet cross-attention: layout and guidance need one"
        if hasattr(model, "forge_objects"):
            return "this WebUI's UNet patcher (forge_objects) belongs to a Forge line InitEdit does not know"
        try:
            from modules import sd_unet

            if getattr(sd_unet, "current_unet", None) is not None:
                return f"the UNet is replaced by {type(sd_unet.current_unet).__name__} (e.g. TensorRT)"
        except ImportError:
            pass
        if feature != "reroll" and not hasattr(getattr(model, "model", None), "diffusion_model"):
            return "the model has no diffusion_model UNet"
        return None

    def noise_stream(self, p, shape, seeds):
        """The WebUI's own noise for these seeds (CPU/GPU/NV source, variation seed, resize, ENSD)."""
        return rng.ImageRNG(shape, seeds, subseeds=getattr(p, "subseeds", None),
                            subseed_strength=getattr(p, "subseed_strength", 0.0),
                            seed_resize_from_h=getattr(p, "seed_resize_from_h", 0),
                            seed_resize_from_w=getattr(p, "seed_resize_from_w", 0))

    def follow_brownian_noise(self, p, make):
        """SDE samplers (DPM++ SDE, 2M SDE, 2M SDE Heun, 3M SDE) ask ``p.sampler.create_noise_sampler(x, sigmas,
        p)`` once per batch for their Brownian noise; route that through ``make``."""
        sampler = getattr(p, "sampler", None)
        if getattr(sampler, "create_noise_sampler", None) is None:
            return lambda: None

        def create(original, x, sigmas, p_):
            base = original(x, sigmas, p_)
            return make(base, x, sigmas) or base

        return patch_once(sampler, "create_noise_sampler", create)

    def brownian_noise(self, x, sigmas, seeds):
        """The WebUI's Brownian noise for these seeds, made as ``create_noise_sampler`` makes it."""
        from modules.sd_samplers_kdiffusion import k_diffusion  # the WebUI's own k-diffusion

        sigma_min, sigma_max = sigmas[sigmas > 0].min(), sigmas.max()
        return k_diffusion.sampling.BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=list(seeds))

    def hook_sampling(self, p, hooks) -> Callable[[], None]:
        """Run ``hooks`` around this batch's sampling (first pass): ``hooks.enter()`` right before the sampler
        starts and ``hooks.leave(completed)`` after it, also on error and interrupt; around every call of the
        sampler's CFG denoiser ``hooks.before_call(call, cond_rows)`` (``call``: its ``Call``, placed on the
        schedule the sampler function is given; cond_rows: the conditional context rows of the call, (N, T, D))
        and ``hooks.after_call(call, denoised) -> tensor | None``.
        An instance attribute on this batch's sampler, removed when it runs; the returned function removes it
        otherwise."""
        sampler = getattr(p, "sampler", None)
        if sampler is None or not hasattr(sampler, "model_wrap_cfg"):
            return lambda: None

        def sample(original, *args, **kwargs):
            denoiser = sampler.model_wrap_cfg
            schedule: list = []
            state: dict = {"clock": None, "call": None}

            def func(original_func, *f_args, **f_kwargs):  # the sampler function: its schedule
                levels = f_kwargs.get("sigmas", f_kwargs.get("timesteps"))
                if levels is not None:
                    schedule.extend(float(v) for v in torch.as_tensor(levels).reshape(-1).tolist())
                return original_func(*f_args, **f_kwargs)

            def before(module, args_, kwargs_):
                if state["clock"] is None:  # the denoiser's budget and steps are set once the sampler runs
                    state["clock"] = CallClock(int(module.total_steps or 1), int(getattr(module, "steps", 0) or
                                                                                 module.total_steps or 1), schedule)
                sigma = kwargs_.get("sigma", args_[1] if len(args_) > 1 else None)
                call = state["call"] = state["clock"].next(call_level(sigma))
                cond = kwargs_.get("cond", args_[3] if len(args_) > 3 else None)
                hooks.before_call(call, context_rows(cond, call.index))

            def after(module, args_, kwargs_, output):
                return hooks.after_call(state["call"], output)

            handles = []
            completed = False
            unpatch_func = patch_once(sampler, "func", func) if "func" in vars(sampler) else (lambda: None)
            try:
                handles.append(denoiser.register_forward_pre_hook(before, with_kwargs=True))
                handles.append(denoiser.register_forward_hook(after, with_kwargs=True))
                hooks.enter()
                result = original(*args, **kwargs)
                # (second-order samplers call the denoiser fewer times than total_steps says)
                completed = not self.should_stop() and state["call"] is not None
                return result
            finally:
                unpatch_func()
                for handle in handles:
                    handle.remove()
                hooks.leave(completed)

        return patch_once(sampler, "sample", sample)

    def sample_base(self, p, x: torch.Tensor, c, uc, hooks) -> None:
        """Generate this batch's first pass from ``x`` with a sampler of its own (the base a reroll keeps to),
        ``hooks`` attached as in ``hook_sampling``; the real sampler, ``p.rng`` and the result are untouched."""
        from modules import sd_samplers

        base_sampler = sd_samplers.create_sampler(p.sampler_name, p.sd_model)
        real_sampler, real_rng = p.sampler, p.rng
        try:
            p.sampler = base_sampler
            p.rng = self.noise_stream(p, tuple(x.shape[1:]), p.seeds)
            p.rng.next()  # the draw that was x_T: later draws (ancestral steps) are the base's own
            self.hook_sampling(p, hooks)
            base_sampler.sample(p, x.clone(), c, uc, image_conditioning=p.txt2img_image_conditioning(x))
        finally:
            p.sampler, p.rng = real_sampler, real_rng

    def base_key(self, p, x_T: torch.Tensor, c, uc, index: int, extra: str) -> str:
        """What decides image ``index``'s first pass, hashed (``cache_key.base_key``)."""
        return cache_key.base_key(p, x_T, c, uc, index, extra, self.cond_rows_of(c)[index])

    def unet_module(self) -> torch.nn.Module:
        return shared.sd_model.model.diffusion_model

    def should_stop(self) -> bool:
        return bool(shared.state.interrupted or shared.state.skipped or getattr(shared.state, "stopping_generation", False))

    def set_textinfo(self, text: str) -> None:
        shared.state.textinfo = text

    def opt(self, name: str, default):
        return getattr(shared.opts, name, default)

    def text_model(self):
        """The embedder whose ``tokenize_line`` builds the chunks (SDXL: CLIP-L; both encoders chunk alike)."""
        model = shared.sd_model
        if hasattr(model, "conditioner"):
            for embedder in model.conditioner.embedders:
                if hasattr(embedder, "tokenize_line"):
                    return embedder
        return model.cond_stage_model

    def prompt_chunks(self, prompt: str) -> list[list[int]]:
        """Content token ids of each 77-token chunk of the prompt's step-0 text (no BOS/EOS/padding)."""
        model = self.text_model()
        chunks, _ = model.tokenize_line(prompt)
        return tokens.chunk_contents([chunk.tokens for chunk in chunks], {model.id_end, getattr(model, "id_pad", model.id_end)})

    def encode_phrase(self, phrase: str) -> list[int]:
        text = "".join(part for part, _ in prompt_parser.parse_prompt_attention(phrase) if part != "BREAK")
        return list(self.text_model().tokenize([text])[0])

    def decode_tokens(self, ids) -> str | None:
        tokenizer = self._tokenizer(self.text_model())
        try:
            return tokenizer.decode(ids) if tokenizer is not None else None
        except Exception:  # an exotic tokenizer: the message falls back to ids
            return None

    def _tokenizer(self, model):
        """The Hugging Face tokenizer behind the embedder (for messages)."""
        return getattr(getattr(model, "wrapped", None), "tokenizer", None)

    def subprompts_at_step0(self, prompt: str, steps: int) -> list[str]:
        """AND-separated sub-prompts, each as its text at step 0 (prompt editing resolved)."""
        res_indexes, flat, _ = prompt_parser.get_multicond_prompt_list([prompt])
        texts = [flat[index] for index, _ in res_indexes[0]]
        return [prompt_parser.get_learned_conditioning_prompt_schedules([t], max(1, steps))[0][0][1] for t in texts]

    def first_timestep(self, p) -> tuple[float, float]:
        """(t, input scale) of the sampler's first model call on the initial noise."""
        sampler = getattr(p, "sampler", None)
        if hasattr(sampler, "get_timesteps"):  # DDIM / PLMS / UniPC start from x as it is
            if getattr(getattr(sampler, "func", None), "__name__", None) == "unipc":
                # UniPC ignores those timesteps in a first pass: it starts at t_continuous = 1, which its model
                # wrapper gives the UNet as (1 - 1/N) * 1000 = 999 (modules/models/diffusion/uni_pc)
                return (1.0 - 1.0 / len(shared.sd_model.alphas_cumprod)) * 1000.0, 1.0
            return float(sampler.get_timesteps(p, p.steps)[-1]), 1.0
        alphas = shared.sd_model.alphas_cumprod
        t = len(alphas) - 1  # k-diffusion schedules start at sigma_max = sigma(t=999)
        if self.opt("sgm_noise_multiplier", False):
            return float(t), 1.0
        return float(t), math.sqrt(1.0 - float(alphas[-1]))  # x*sigma*c_in = x*sqrt(1-alpha_bar)

    def probe_call(self, p, x: torch.Tensor, c, rows: list[int]):
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
        t, scale = self.first_timestep(p)

        def call(noise: torch.Tensor):
            ts = torch.full((noise.shape[0],), t, device=noise.device)
            return shared.sd_model.apply_model(noise * scale, ts, cond)

        return call

    def cond_rows_of(self, c) -> list[list[int]]:
        """For each image of the batch, the cond rows of its AND sub-prompts, in prompt order."""
        conds_list, _ = prompt_parser.reconstruct_multicond_batch(c, 0)
        return [[row for row, _ in item] for item in conds_list]

    def forget_controlnet_batch_caches(self, p) -> None:
        """sd-webui-controlnet caches encoded hints with the batch size of the first UNet call it sees; the
        probe (cond rows only) must not be that call, so make it recompute them (internal API of CN 1.1.x)."""
        scripts = getattr(getattr(p, "scripts", None), "alwayson_scripts", None) or []
        for script in scripts:
            for param in getattr(getattr(script, "latest_network", None), "control_params", None) or []:
                if hasattr(param, "used_hint_cond"):
                    param.used_hint_cond = None
