"""One-shot, per-instance patches of this batch's sampler: how the A1111-style hosts hook sampling."""
from __future__ import annotations

import functools
from typing import Callable

from modules import prompt_parser


def patch_once(obj, name: str, body: Callable) -> Callable[[], None]:
    """Give ``obj`` (this batch's sampler: a per-generation object) an instance attribute ``name`` that runs
    ``body(original, *args, **kwargs)`` once and is removed as it starts; returns the function that removes
    it if it never runs. Whatever ``obj.name`` was before (a method or another extension's patch) is restored."""
    original = getattr(obj, name)
    had_own = name in vars(obj)

    def restore():
        if vars(obj).get(name) is patched:
            if had_own:
                setattr(obj, name, original)
            else:
                delattr(obj, name)

    @functools.wraps(original)  # inspect.signature sees the original's (A1111 passes sigmas only if it asks for them)
    def patched(*args, **kwargs):
        restore()
        return body(original, *args, **kwargs)

    setattr(obj, name, patched)
    return restore


def context_rows(cond, index):
    """The conditional cross-attention context of a denoiser call, as the UNet will see it."""
    if cond is None:
        return None
    _, tensor = prompt_parser.reconstruct_multicond_batch(cond, index)
    return tensor.get("crossattn") if isinstance(tensor, dict) else tensor


def call_level(sigma) -> float | None:
    """The noise level (sigma, or a timestep sampler's t) of a denoiser call, from its argument."""
    if sigma is None:
        return None
    try:
        return float(sigma.reshape(-1)[0]) if hasattr(sigma, "reshape") else float(sigma)
    except (TypeError, ValueError, IndexError):
        return None
