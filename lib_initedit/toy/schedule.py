"""SD-like noise schedule (scaled-linear betas 0.00085 -> 0.012, 1000 steps, eps-prediction)
and a deterministic DDIM sampler with classifier-free guidance from an explicit x_T."""
from __future__ import annotations

import torch

from ..sampling_hooks import Call

T = 1000
BETAS = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, T, dtype=torch.float64) ** 2
ALPHAS_CUMPROD = torch.cumprod(1 - BETAS, 0).float()


def ddim_timesteps(steps: int) -> list[int]:
    """Uniform ldm spacing, descending: e.g. 50 steps -> 981, 961, ..., 1."""
    c = T // steps
    return [t + 1 for t in range(0, T, c)][:steps][::-1]


def q_sample(x0, t, eps):
    a = ALPHAS_CUMPROD[t].view(-1, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * eps


@torch.no_grad()
def ddim_sample(unet, x_T, cond, uncond, steps: int = 20, guidance: float = 5.0, clip: bool = True,
                hooks=None, edit_x=None):
    """Deterministic DDIM (eta=0) with CFG. `cond`/`uncond`: (B, 77, D) contexts; the UNet's batch is
    [uncond rows, cond rows].

    ``hooks``: a ``SamplingHooks`` (``lib_initedit/sampling_hooks.py``), run exactly as a WebUI host runs it:
    ``enter()`` before the first step, ``before_call(call, cond)`` before step i's model call (``call`` =
    ``Call.plain(i, steps)``: one call a step; ``cond[b]`` is image b's conditional context), ``after_call(call, x0)``
    on the x0 prediction after CFG (and
    clipping), which may replace it, the step then continuing from it (like the WebUI's ``cfg_after_cfg``), and
    ``leave(completed)`` afterwards, also on error. ``edit_x(i, t, x) -> x`` may replace the sampler's state
    before step i (research only: a WebUI sampler's state is its own).
    """
    if hooks is not None:
        hooks.enter()
    completed = False
    try:
        x0 = _ddim_loop(unet, x_T, cond, uncond, steps, guidance, clip, hooks, edit_x)
        completed = True
    finally:
        if hooks is not None:
            hooks.leave(completed)
    return x0


def _ddim_loop(unet, x, cond, uncond, steps, guidance, clip, hooks, edit_x):
    ts = ddim_timesteps(steps)
    ctx = torch.cat([uncond, cond])
    for i, t in enumerate(ts):
        if edit_x is not None:
            x = edit_x(i, t, x)
        if hooks is not None:
            call = Call.plain(i, steps)
            hooks.before_call(call, cond)
        tt = torch.full((x.shape[0] * 2,), t, dtype=torch.long)
        e_u, e_c = unet(torch.cat([x, x]), tt, context=ctx).chunk(2)
        eps = e_u + guidance * (e_c - e_u)
        a = ALPHAS_CUMPROD[t]
        a_prev = ALPHAS_CUMPROD[ts[i + 1]] if i + 1 < len(ts) else ALPHAS_CUMPROD[0]
        x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
        if clip:
            x0 = x0.clamp(-1, 1)
        changed = hooks.after_call(call, x0) if hooks is not None else None
        if changed is not None:
            x0 = changed
        if clip or changed is not None:
            eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    return x0
