"""The WebUIs of the patcher family: Forge 2 / Neo (``backend/``) and reForge / Forge Classic (``ldm_patched``).

They keep A1111's processing (``p``, ``sampler.sample``, the ``CFGDenoiser`` module with ``total_steps``,
``modules.rng``, ``prompt_parser``) and run the UNet through a ``ModelPatcher`` at
``p.sd_model.forge_objects.unet``. So ``WebUIPatcherHost`` is A1111's host with the patcher base
(``lib_initedit.patcher.PatcherHost``) in front: the probe is one conditional call at the sampler's first sigma
on a copy of the patcher's options without attn2 replace patches, and while the sampler runs, layout guidance
also acts through those patches (``ReplacedAttentionGuidance``). Each line says how it compiles conditions and
calls the model once (``_compile_conditions``, ``_calc_cond``), where its samplers' first sigma is, how it
tokenizes, and which of its settings change a first pass.
"""
from __future__ import annotations

import math

import torch

from modules import shared

from ...patcher import PatcherHost
from .a1111 import A1111Host


def model_family(model) -> str:
    """The loaded model's family as the WebUI names it: the diffusion engine's class (Forge / Neo:
    ``StableDiffusionXL``, ``Flux``, ``Chroma``, ``Lumina2``, ``ZImage``, ``QwenImage``, ``Anima``, ``Wan`` ...)."""
    return type(model).__name__


def _sd_model(p):
    model = getattr(p, "sd_model", None)
    return shared.sd_model if model is None else model


class WebUIPatcherHost(PatcherHost, A1111Host):
    name = "patcher"
    OWN_OPTIONS: tuple = ()  # settings of this line that change a first pass (in the keep cache's key)
    UNET_FLAGS = ("is_sd1", "is_sd2", "is_sdxl")  # model families with an ldm-layout UNet

    # ---------------------------------------------------------------------------------------- support
    def say_once(self, message: str) -> None:
        """The WebUI console's (A1111Host's): PatcherHost, first in the MRO, only declares it."""
        A1111Host.say_once(self, message)

    def unsupported_reason(self, feature: str = "layout") -> str | None:
        """Why ``feature`` ("reroll" or "layout", see the Protocol) cannot run on the loaded model, or None.
        Reroll and keep need only the sampler (A1111's, kept by every line) and the model behind the patcher:
        every family the line loads (Flux, Chroma, SD3, Lumina 2, Z-Image, Qwen-Image, Anima, Wan ...: 16 or
        more latent channels, (B, C, T, H, W) latents, flow matching). Layout needs an SD1/SD2/SDXL UNet."""
        model = shared.sd_model
        if model is None:
            return "no model is loaded"
        patcher = getattr(getattr(model, "forge_objects", None), "unet", None)
        if patcher is None:
            return "the model has no UNet patcher (forge_objects.unet)"
        if feature == "reroll":
            return None
        for flag, family in (("is_sd3", "SD3"), ("is_flux", "Flux"), ("is_chroma", "Chroma")):
            if getattr(model, flag, False):
                return f"{family} has no UNet cross-attention to probe (layout and guidance need one)"
        if not any(getattr(model, flag, False) for flag in self.UNET_FLAGS):
            return (f"{model_family(model)} is not an SD1/SD2/SDXL UNet model: no UNet cross-attention "
                    "(layout and guidance need one)")
        unet = getattr(getattr(patcher, "model", None), "diffusion_model", None)
        if unet is None or not hasattr(unet, "input_blocks"):
            return "the model's diffusion_model is not a UNet with input_blocks"
        return self._model_reason(model, patcher)

    def _model_reason(self, model, patcher) -> str | None:
        """What else this line cannot run (prediction type, tokenizer)."""
        return None

    # ---------------------------------------------------------------------------------------- sampling
    def hook_sampling(self, p, hooks):
        """A1111's hooks (the sampler and its CFG denoiser are A1111's), with attn2 replace patches guided too."""
        return A1111Host.hook_sampling(self, p, ReplacedAttentionGuidance(self, p, hooks))

    def sample_base(self, p, x: torch.Tensor, c, uc, hooks) -> None:
        """The batch's first pass from ``x`` with a sampler of its own, as on A1111 (replace patches guided too)."""
        A1111Host.sample_base(self, p, x, c, uc, ReplacedAttentionGuidance(self, p, hooks))

    def base_key(self, p, x_T: torch.Tensor, c, uc, index: int, extra: str) -> str:
        """A1111's key plus this line's settings that change a first pass."""
        own = repr([(option, getattr(shared.opts, option, None)) for option in self.OWN_OPTIONS])
        return A1111Host.base_key(self, p, x_T, c, uc, index, f"{extra}\0{self.name}:{own}")

    # ---------------------------------------------------------------------------------------- model
    def unet_patcher(self, p=None):
        return _sd_model(p).forge_objects.unet

    def first_sigma(self, p) -> tuple[float, float]:
        """(sigma of the sampler's first model call, scale from x_T to the UNet's input ``x_in / sqrt(1 + s^2)``)."""
        sampler = getattr(p, "sampler", None)
        if hasattr(sampler, "get_sigmas"):  # k-diffusion samplers: x = x_T * sigmas[0] (or sqrt(1 + s^2))
            sigma = float(sampler.get_sigmas(p, p.steps)[0])
            if self.opt("sgm_noise_multiplier", False):
                return sigma, 1.0
            return sigma, sigma / math.sqrt(1.0 + sigma * sigma)
        return self._timestep_sampler_sigma(p)

    def _timestep_sampler_sigma(self, p) -> tuple[float, float]:
        """DDIM / PLMS / UniPC: the UNet sees x_T as it is, at the sigma of their first timestep."""
        raise NotImplementedError

    def probe_call(self, p, x: torch.Tensor, c, rows: list[int]):
        """A callable running the UNet once on a noise batch with the conditional rows ``rows`` at the first sigma,
        with the patcher's options (LoRA, model wrappers, other patches) less attn2 replace patches."""
        patcher = self.unet_patcher(p)
        conds = _cond_rows(c, rows)
        sigma, scale = self.first_sigma(p)
        options = self.probe_options(patcher)
        image_cond = p.txt2img_image_conditioning(x) if hasattr(p, "txt2img_image_conditioning") else None
        if getattr(patcher, "extra_concat_condition", None) is not None:
            image_cond = patcher.extra_concat_condition
        prepare, cleanup = self._sampling_prepare_cleanup()

        def call(noise: torch.Tensor):
            inpaint = (image_cond if isinstance(image_cond, torch.Tensor) and image_cond.shape[0] == noise.shape[0]
                       and image_cond.shape[2:] == noise.shape[2:] else None)  # inpainting models, as the sampler does
            cond = self._compile_conditions(conds, inpaint)
            prepare(patcher, noise)  # loads the UNet where the sampler will run it
            try:
                x_in = noise * (scale * math.sqrt(1.0 + sigma * sigma))  # the model applies c_in = 1/sqrt(1+s^2)
                ts = torch.full((noise.shape[0],), sigma, device=noise.device, dtype=torch.float32)
                return self._calc_cond(patcher, cond, x_in, ts, options)
            finally:
                cleanup(patcher)

        return call

    def _compile_conditions(self, conds, image_cond):
        """The line's condition list for the step-0 cond rows (``c_concat`` from ``image_cond`` when given)."""
        raise NotImplementedError

    def _calc_cond(self, patcher, cond, x_in, ts, options):
        """One conditional model call (no uncond) at sigma ``ts``; the conditional output."""
        raise NotImplementedError

    def _sampling_prepare_cleanup(self):
        """(load the patcher for ``noise``, release it) as the line's sampler does around sampling."""
        raise NotImplementedError


def _cond_rows(c, rows: list[int]):
    """The step-0 conditioning rows ``rows``: a tensor (SD1/SD2) or {"crossattn", "vector"} (SDXL)."""
    from modules import prompt_parser

    _, tensor = prompt_parser.reconstruct_multicond_batch(c, 0)
    if isinstance(tensor, dict):
        return {k: v[torch.tensor(rows, dtype=torch.long, device=v.device)] for k, v in tensor.items()}
    return tensor[torch.tensor(rows, dtype=torch.long, device=tensor.device)]


class ReplacedAttentionGuidance:
    """``hooks`` (a SamplingHooks) plus, while they run, the attn2 replace patches of the patcher the WebUI samples
    with are guided too: ``enter()`` puts a guided clone (``PatcherHost.guided_clone``) in place of
    ``forge_objects.unet`` for this sampling; ``leave()`` puts the patcher back, also after an error or interrupt.
    ``forge_objects`` is the WebUI's per-batch shallow copy: the shared patchers (the model's
    ``forge_objects_original`` / ``_after_applying_lora``, another extension's clone) are never written.
    Without replace patches or without a part that guides, it only passes the calls through."""

    def __init__(self, host: PatcherHost, p, hooks):
        self.host, self.p, self.hooks = host, p, hooks
        self.blocks = None
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

    def before_call(self, call, cond_rows) -> None:
        self.hooks.before_call(call, cond_rows)

    def after_call(self, call, denoised):
        return self.hooks.after_call(call, denoised)

    def _install(self) -> None:
        objects = getattr(_sd_model(self.p), "forge_objects", None)
        patcher = getattr(objects, "unet", None)
        if patcher is None:
            return
        clone, blocks = self.host.guided_clone(patcher, self.hooks)
        if clone is not None:
            objects.unet = clone
            self.blocks, self._swap = blocks, (objects, patcher, clone)

    def _remove(self) -> None:
        swap, self._swap = self._swap, None
        if swap is not None:
            objects, patcher, clone = swap
            if objects.unet is clone:  # someone else's later swap stays theirs
                objects.unet = patcher
