"""The key of a first pass for 'Keep the rest': everything that decides one image's first pass, hashed.

Shared by every WebUI host (the patcher family adds its own settings through ``extra``)."""
from __future__ import annotations

import hashlib

import torch

from modules import prompt_parser, shared


def base_key(p, x_T: torch.Tensor, c, uc, index: int, extra: str, rows: list[int]) -> str:
    """What decides image ``index``'s first pass, hashed: its initial noise (seed, variation, resize, source,
    ENSD and any layout edit all show there), its conditioning at step 0, prompt texts, model, sampler,
    schedule, CFG, the sampler settings, and every other script's arguments; ``extra``: InitEdit's own."""
    h = hashlib.sha1()

    def feed(value):
        if isinstance(value, torch.Tensor):
            h.update(str((tuple(value.shape), str(value.dtype))).encode())
            h.update(value.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        else:
            h.update(repr(value).encode())
            h.update(b"\0")

    feed(x_T)
    _, cond = prompt_parser.reconstruct_multicond_batch(c, 0)
    for key in sorted(cond) if isinstance(cond, dict) else [None]:
        feed((cond[key] if key else cond)[rows])
    uncond = prompt_parser.reconstruct_cond_batch(uc, 0)
    for key in sorted(uncond) if isinstance(uncond, dict) else [None]:
        feed((uncond[key] if key else uncond)[index])
    prompts, negatives = getattr(p, "prompts", [""]), getattr(p, "negative_prompts", [""])
    feed((prompts[min(index, len(prompts) - 1)], negatives[min(index, len(negatives) - 1)]))
    model = shared.sd_model
    feed((getattr(model, "sd_model_hash", None), getattr(getattr(model, "sd_checkpoint_info", None), "filename", None)))
    feed((p.sampler_name, getattr(p, "scheduler", None), p.steps, p.cfg_scale, p.width, p.height,
          getattr(p, "eta", None), getattr(p, "s_churn", None), getattr(p, "s_tmin", None),
          getattr(p, "s_tmax", None), getattr(p, "s_noise", None), getattr(p, "s_min_uncond", None),
          getattr(p, "override_settings", None)))
    for name in ("eta_ancestral", "eta_ddim", "eta_noise_seed_delta", "randn_source", "CLIP_stop_at_last_layers",
                 "sgm_noise_multiplier", "always_discard_next_to_last_sigma", "uni_pc_variant", "uni_pc_skip_type",
                 "uni_pc_order", "uni_pc_lower_order_final", "skip_early_cond", "s_min_uncond_all",
                 "batch_cond_uncond", "pad_cond_uncond", "pad_cond_uncond_v0", "sd_unet", "sd_vae",
                 "no_dpmpp_sde_batch_determinism", "cross_attention_optimization"):
        feed((name, getattr(shared.opts, name, None)))
    feed(_other_scripts_args(p))
    feed(extra)
    return h.hexdigest()


def _other_scripts_args(p):
    """Every script argument except InitEdit's own, as hashable text (arrays by content)."""
    import numpy as np

    args = list(getattr(p, "script_args", None) or [])
    runner = getattr(p, "scripts", None)
    for script in getattr(runner, "alwayson_scripts", None) or []:
        if type(script).__module__.endswith("initedit.py") or getattr(script, "title", lambda: "")() == "InitEdit":
            for i in range(script.args_from, script.args_to):
                if i < len(args):
                    args[i] = None

    def norm(value, depth=0):
        if depth > 6:
            return "..."
        if isinstance(value, np.ndarray):
            return ("ndarray", value.shape, hashlib.sha1(np.ascontiguousarray(value).tobytes()).hexdigest())
        if isinstance(value, torch.Tensor):
            return ("tensor", tuple(value.shape), hashlib.sha1(value.detach().cpu().contiguous().numpy().tobytes()).hexdigest())
        if isinstance(value, dict):
            return tuple((str(k), norm(v, depth + 1)) for k, v in sorted(value.items(), key=lambda kv: str(kv[0])))
        if isinstance(value, (list, tuple)):
            return tuple(norm(v, depth + 1) for v in value)
        if hasattr(value, "__dict__") and not isinstance(value, type):
            return (type(value).__name__, norm(vars(value), depth + 1))
        if hasattr(value, "tobytes"):  # PIL images
            return (type(value).__name__, hashlib.sha1(value.tobytes()).hexdigest())
        return repr(value)

    return repr(norm(args))
