"""The ``ldm_patched`` Forge line: reForge and Forge Classic.

These WebUIs keep A1111's processing, samplers and text embedders (``modules/sd_samplers_*``,
``sd_hijack_clip``) and run the UNet through ComfyUI's ``ldm_patched`` (``p.sd_model.forge_objects.unet``: a
``UnetPatcher``). What differs from the rest of the patcher family (``patcher_family.WebUIPatcherHost``):

- one model call is ``ldm_patched.modules.samplers.calc_cond_batch`` (reForge; Forge Classic:
  ``calc_cond_uncond_batch``) on the patcher's ``BaseModel``, with the options of a **clone** of the patcher;
  conditioning as the sampler builds it (``modules_forge.forge_sampler.cond_from_a1111_to_patched_ldm``);
- DDIM / PLMS / UniPC (``CFGDenoiserTimesteps``, ``classic_ddim_eps_estimation``) start at the sigma of their
  first timestep (A1111's ``first_timestep``), which the UNet sees as x_T;
- the SDE samplers' Brownian noise comes from the k-diffusion the WebUI samples with (reForge's
  ``sd_sampling`` option: its own ``k_diff`` or ``ldm_patched.k_diffusion``; Forge Classic: ``k_diffusion``);
- phrase positions go through the model's A1111-style embedders (``cond_stage_model`` /
  ``conditioner.embedders``), which reForge keeps with the ldm_patched tokenizers swapped in;
- sd-webui-controlnet, if installed anyway, is handled as on A1111.

Import only inside such a WebUI (``ldm_patched`` / ``modules_forge`` are imported by name when called).
"""
from __future__ import annotations

import math
from importlib import import_module

from modules import shared

from .a1111 import A1111Host
from .patcher_family import WebUIPatcherHost

SUPPORTED_MODEL_TYPES = ("EPS", "V_PREDICTION")


class LdmPatchedHost(WebUIPatcherHost):
    name = "ldm_patched"
    OWN_OPTIONS = ("sd_sampling", "epsilon_scaling_enabled", "epsilon_scaling_factor", "dynamic_clip_skip_enabled",
                   "sd_noise_schedule", "forge_unet_storage_dtype", "forge_try_reproduce")
    forget_controlnet_batch_caches = A1111Host.forget_controlnet_batch_caches

    def _model_reason(self, model, patcher) -> str | None:
        kind = getattr(getattr(patcher.model, "model_type", None), "name", None)
        if kind is not None and kind not in SUPPORTED_MODEL_TYPES:
            return f"{kind} models are not supported (only EPS and v-prediction UNets)"
        try:
            self.text_model()
        except AttributeError:
            return "no text embedder on the model (tokenizer unknown)"
        return None

    def brownian_noise(self, x, sigmas, seeds):
        """The SDE samplers' Brownian noise as ``Sampler.create_noise_sampler`` makes it, from the k-diffusion
        the WebUI samples with (see the module doc; Forge Classic imports ``ldm_patched/k_diffusion`` as the
        top-level ``k_diffusion``)."""
        choice = self.opt("sd_sampling", None)
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

    # ---------------------------------------------------------------------------------------- probe
    def _timestep_sampler_sigma(self, p) -> tuple[float, float]:
        t, scale = self.first_timestep(p)
        alphas = shared.sd_model.alphas_cumprod
        a = float(alphas[min(max(int(round(t)), 0), len(alphas) - 1)])
        return math.sqrt((1.0 - a) / a), scale

    def _compile_conditions(self, conds, image_cond):
        cond = import_module("modules_forge.forge_sampler").cond_from_a1111_to_patched_ldm(conds)
        if image_cond is not None:
            CONDRegular = import_module("ldm_patched.modules.conds").CONDRegular
            for item in cond:
                item["model_conds"]["c_concat"] = CONDRegular(image_cond)
        return cond

    def _calc_cond(self, patcher, cond, x_in, ts, options):
        samplers = import_module("ldm_patched.modules.samplers")
        probe_patcher = patcher.clone()  # the probe's own patcher; the shared one is never written to
        probe_patcher.model_options = options
        if hasattr(samplers, "calc_cond_batch"):
            return samplers.calc_cond_batch(probe_patcher.model, [cond, None], x_in, ts, options)[0]
        return samplers.calc_cond_uncond_batch(probe_patcher.model, cond, None, x_in, ts, options)[0]

    def _sampling_prepare_cleanup(self):
        forge_sampler = import_module("modules_forge.forge_sampler")
        return forge_sampler.sampling_prepare, forge_sampler.sampling_cleanup
