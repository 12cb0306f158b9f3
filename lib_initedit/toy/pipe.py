"""Glue for the toy model: seeded noise, CFG generation from an explicit x_T, and the probe call
that `lib_initedit.layout.probe.run_layout` expects (one conditional UNet pass at the first timestep)."""
from __future__ import annotations

import torch

from .data import SIZE
from .model import ToyModel, load
from .schedule import ddim_sample, ddim_timesteps

SHAPE = (3, SIZE, SIZE)


def seed_noise(seed: int, shape=SHAPE) -> torch.Tensor:
    """The x_T of a seed: standard normal from a CPU generator (like the WebUI's CPU RNG)."""
    return torch.randn(tuple(shape), generator=torch.Generator().manual_seed(int(seed)))


class SeedStream:
    """The toy's noise source, like the WebUI's ImageRNG: one generator per image seed; each ``next()``
    draws (B, *shape); the first draw of seed s is ``seed_noise(s)``."""

    def __init__(self, shape, seeds):
        self.shape = tuple(shape)
        self.seeds = list(seeds)
        self.generators = [torch.Generator().manual_seed(int(s)) for s in self.seeds]

    def next(self) -> torch.Tensor:
        return torch.stack([torch.randn(self.shape, generator=g) for g in self.generators])


class ToyPipe:
    def __init__(self, model: ToyModel | None = None, steps: int = 20, guidance: float = 5.0):
        self.model = model or load()
        self.steps, self.guidance = steps, guidance
        self._uncond = None

    @property
    def unet(self):
        return self.model.unet

    @property
    def t_first(self) -> int:
        return ddim_timesteps(self.steps)[0]

    @torch.no_grad()
    def cond(self, captions: list[str]) -> torch.Tensor:
        return self.model.encode(captions)

    @torch.no_grad()
    def generate(self, x_T: torch.Tensor, captions: list[str], chunk: int = 64, hooks=None,
                 edit_x=None) -> torch.Tensor:
        """Images (B, 3, S, S) in [-1, 1] from noises (B, 3, S, S). With ``hooks`` (a ``SamplingHooks``, see
        ``ddim_sample``) the batch is one chunk, so the hooks see every image at once, as in a WebUI batch."""
        if hooks is not None or edit_x is not None:
            chunk = max(chunk, x_T.shape[0])
        if self._uncond is None:
            self._uncond = self.cond([""])
        out = []
        for i in range(0, x_T.shape[0], chunk):
            xs, caps = x_T[i:i + chunk], captions[i:i + chunk]
            c = self.cond(caps)
            out.append(ddim_sample(self.unet, xs, c, self._uncond.expand_as(c), self.steps, self.guidance,
                                   hooks=hooks, edit_x=edit_x))
        return torch.cat(out)

    def probe_call(self, captions: list[str]):
        """`call(x)` for run_layout: the conditional UNet pass at the first DDIM timestep."""
        c = self.cond(captions)
        t = self.t_first

        def call(x: torch.Tensor):
            with torch.no_grad():
                return self.unet(x, torch.full((x.shape[0],), t, dtype=torch.long), context=c)

        return call

    def phrase_positions(self, caption: str, phrases: list[str]) -> list[list[int]]:
        return [self.model.tokenizer.phrase_positions(caption, p) for p in phrases]
