"""The Forge host: Forge 2 ``main`` and Forge Neo (the ``backend/`` package).

What differs from the rest of the patcher family (``patcher_family.WebUIPatcherHost``):

- noise from the host's own ``modules.rng.ImageRNG`` (Forge's ``randn`` differs from A1111's: the
  ``forge_try_reproduce`` option forces CPU noise and a passed generator reseeds the global RNG; the host's
  module gives exactly the noise Forge gives that seed) through A1111's ``noise_stream``;
- one model call is ``backend.sampling.sampling_function.calc_cond_uncond_batch`` on the ``KModel`` (it takes
  sigma and applies ``c_in`` itself) with conditions from ``backend.sampling.condition.compile_conditions``,
  between ``sampling_prepare`` / ``sampling_cleanup``;
- DDIM / PLMS / UniPC start at the predictor's sigma of their first timestep;
- phrase positions through the model's own ``text_processing_engine`` (SD1/SD2) or
  ``text_processing_engine_l`` (SDXL): ``cond_stage_model`` is None on Forge;
- Forge disables sd-webui-controlnet (its ControlNet is built in and linked per sampling call).

Import only inside a Forge WebUI (``backend`` and ``modules`` are the host's).
"""
from __future__ import annotations

import importlib

import torch

from .patcher_family import WebUIPatcherHost


class ForgeHost(WebUIPatcherHost):
    name = "forge"
    OWN_OPTIONS = ("forge_try_reproduce", "forge_additional_modules", "forge_unet_storage_dtype",
                   "forge_preset", "forge_inference_memory", "forge_async_loading", "forge_pin_shared_memory")

    def _model_reason(self, model, patcher) -> str | None:
        if getattr(getattr(patcher.model, "predictor", None), "prediction_type", None) == "const":
            return "flow-matching models are not supported"
        if _text_engine(model) is None:
            return "no text_processing_engine on the model (tokenizer unknown)"
        return None

    # ---------------------------------------------------------------------------------------- probe
    def _timestep_sampler_sigma(self, p) -> tuple[float, float]:
        predictor = self.unet_patcher(p).model.predictor
        sampler = getattr(p, "sampler", None)
        if hasattr(sampler, "get_timesteps") and hasattr(predictor, "sigma"):
            t = sampler.get_timesteps(p, p.steps)[-1]
            return float(predictor.sigma(torch.as_tensor(t).reshape(1).float())[0]), 1.0
        sigma = predictor.sigma_max
        return float(sigma() if callable(sigma) else sigma), 1.0

    def _compile_conditions(self, conds, image_cond):
        # Forge's own ``backend`` package, imported by name when called (the house-rules test lists the WebUI
        # packages a runtime import may name)
        condition = importlib.import_module("backend.sampling.condition")
        cond = condition.compile_conditions(conds)
        if image_cond is not None:
            cond[0]["model_conds"]["c_concat"] = condition.Condition(image_cond)
        return cond

    def _calc_cond(self, patcher, cond, x_in, ts, options):
        sampling = importlib.import_module("backend.sampling.sampling_function")
        out, _ = sampling.calc_cond_uncond_batch(patcher.model, cond, None, x_in, ts, options)
        return out

    def _sampling_prepare_cleanup(self):
        sampling = importlib.import_module("backend.sampling.sampling_function")
        return sampling.sampling_prepare, sampling.sampling_cleanup

    def forget_controlnet_batch_caches(self, p) -> None:
        """Nothing to forget: Forge disables sd-webui-controlnet by folder name and its built-in ControlNet is
        linked to the patcher per sampling call; the probe passes no control, so no cache sees its batch."""

    # ---------------------------------------------------------------------------------------- text
    def text_model(self):
        """The ClassicTextProcessingEngine that chunks the prompt (SDXL: CLIP-L's; both chunk alike)."""
        from modules import shared

        engine = _text_engine(shared.sd_model)
        if engine is None:
            raise RuntimeError("the model has no text_processing_engine")
        return engine

    def _tokenizer(self, model):
        return getattr(model, "tokenizer", None)


def _text_engine(model):
    for name in ("text_processing_engine", "text_processing_engine_l"):
        engine = getattr(model, name, None)
        if engine is not None and hasattr(engine, "tokenize_line"):
            return engine
    return None
