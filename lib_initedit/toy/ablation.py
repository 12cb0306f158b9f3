"""The layout bench's method table and the research knobs that the extension does not ship.

A method is a spec-like setting: a dict of ``InitEditSpec`` fields applied to ``InitEditSpec()`` ("default" is
``{}``, exactly the spec's defaults; None: no edit). Keys starting with "_" are research knobs no spec field
carries: ``_probe`` (extra ``run_layout`` arguments), ``_probe_t`` (the probe timestep), ``_guide`` (guided
layers and ``ResearchBoxBias`` fields), ``_noedit`` (guidance without the noise edit), ``_reprobe`` (re-probe
and move blocks of the sampler's state after k steps).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..layout import guidance, probe
from ..layout.box_bias import MAX_SIZE_GAIN, BoxBias, _area, _shrink
from ..layout.placement import box_cells, box_coverage
from .pipe import ToyPipe

NO_SIZE = dict(size_power=0.0)  # the same bias for every box size
LOGITS = dict(guidance_units="logits")  # guidance as a fixed score bias
OLD = dict(LOGITS, guidance=8.0)  # +-8 logits: what an infotext without guidance_units means
METHODS = {  # key -> spec-like setting: InitEditSpec fields (None: no edit)
    "none": None,
    "default": {},
    "legacy": OLD,  # +-8 logits, everything else as the default
    "share50": dict(guidance=50.0),
    "share70": dict(guidance=70.0),
    "share80": dict(guidance=80.0),
    "share90": dict(guidance=90.0),
    "share95": dict(guidance=95.0),
    "share99": dict(guidance=99.0),
    "paper": dict(rounds=1, method="swap", layers="paper", guidance=0.0),
    "rebuild": dict(rounds=1, method="rebuild", layers="paper", guidance=0.0),
    "rounds2": dict(rounds=2, method="swap", layers="paper", guidance=0.0),
    "rounds3": dict(rounds=3, method="swap", layers="paper", guidance=0.0),
    "level": dict(rounds=1, method="swap", layers="level", guidance=0.0),
    "layer5": dict(rounds=1, method="swap", layers="level", guidance=0.0,
                   _probe=dict(layers=["input_blocks.5.1.transformer_blocks.0.attn2"])),
    "level2r": dict(rounds=2, method="swap", layers="level", guidance=0.0),
    "levelrb": dict(rounds=1, method="rebuild", layers="level", guidance=0.0),
    # guidance ablations in logits units, on top of "level" (swap, 1 round, both 8x8 down layers)
    "g4": dict(**LOGITS, guidance=4.0, guidance_steps=0.3, _guide=NO_SIZE),
    "g4only": dict(**LOGITS, guidance=4.0, guidance_steps=0.3, _noedit=True, _guide=NO_SIZE),
    "g4lvl": dict(**LOGITS, guidance=4.0, guidance_steps=0.3, _guide=dict(size_power=0.0, layers="level")),
    "g4down": dict(**LOGITS, guidance=4.0, guidance_steps=0.3, _guide=dict(size_power=0.0, layers="down")),
    "g2": dict(**LOGITS, guidance=2.0, guidance_steps=0.3, _guide=NO_SIZE),
    "g8": dict(**LOGITS, guidance=8.0, guidance_steps=0.3, _guide=NO_SIZE),
    "g4s5": dict(**LOGITS, guidance=4.0, guidance_steps=0.5, _guide=NO_SIZE),
    "g4s15": dict(**LOGITS, guidance=4.0, guidance_steps=0.15, _guide=NO_SIZE),
    "g4size": dict(**LOGITS, guidance=4.0, guidance_steps=0.3, _guide=dict(size_power=1.0)),
    "g8s5": dict(**LOGITS, guidance=8.0, guidance_steps=0.5, _guide=NO_SIZE),
    "g8s5size": dict(**LOGITS, guidance=8.0, guidance_steps=0.5, _guide=dict(size_power=1.0)),
    "pool4g8s5": dict(**LOGITS, guidance=8.0, guidance_steps=0.5, _probe=dict(candidates=4), _guide=NO_SIZE),
    "g12s5size": dict(**LOGITS, guidance=12.0, guidance_steps=0.5, _guide=dict(size_power=1.0)),
    "g16s5size": dict(**LOGITS, guidance=16.0, guidance_steps=0.5, _guide=dict(size_power=1.0)),
    "g8s7size": dict(**LOGITS, guidance=8.0, guidance_steps=0.7, _guide=dict(size_power=1.0)),
    "g12s7size": dict(**LOGITS, guidance=12.0, guidance_steps=0.7, _guide=dict(size_power=1.0)),
    "g12s5core": dict(**LOGITS, guidance=12.0, guidance_steps=0.5, _guide=dict(size_power=1.0, core=0.5)),
    "g12s5r2": dict(**LOGITS, guidance=12.0, guidance_steps=0.5, rounds=2, _guide=dict(size_power=1.0)),
    "area": dict(**OLD, _guide=dict(edge="area")),
    "floor05": dict(**OLD, _guide=dict(size_floor=0.5)),
    "lin1": dict(**OLD, _guide=dict(large_inside=1.0)),
    "lcore05": dict(**OLD, _guide=dict(large_core=0.5)),
    "lcore07": dict(**OLD, _guide=dict(large_core=0.7)),
    "lin2": dict(**OLD, _guide=dict(large_inside=2.0)),
    "floor025": dict(**OLD, _guide=dict(size_floor=0.25)),
    "reprobe1": dict(**OLD, _reprobe=dict(step=1)),
    "reprobe2": dict(**OLD, _reprobe=dict(step=2)),
    "reprobe4": dict(**OLD, _reprobe=dict(step=4)),
    "reprobe2ng": dict(guidance=0.0, _reprobe=dict(step=2)),
    "pool4": dict(guidance=0.0, _probe=dict(candidates=4)),
    "pool8": dict(guidance=0.0, _probe=dict(candidates=8)),
    "pool4g4": dict(**LOGITS, guidance=4.0, guidance_steps=0.3, _probe=dict(candidates=4), _guide=NO_SIZE),
    "smooth05": dict(guidance=0.0, _probe=dict(smooth=0.5)),
    "smooth1": dict(guidance=0.0, _probe=dict(smooth=1.0)),
    "zscore": dict(guidance=0.0, _probe=dict(norm="zscore")),
    "normmax": dict(guidance=0.0, _probe=dict(norm="max")),
    "t981": dict(guidance=0.0, _probe_t=981),
    "t901": dict(guidance=0.0, _probe_t=901),
    "t801": dict(guidance=0.0, _probe_t=801),
}
LABELS = {"none": "no edit", "default": "the default (InitEditSpec())", "paper": "paper: swap, 1 round, 1 layer",
          "rebuild": "full rebuild, 1 round", "rounds2": "swap, 2 rounds", "rounds3": "swap, 3 rounds",
          "level": "swap, all 8x8 down layers (2)", "layer5": "swap, first 8x8 layer only (input_blocks.5.1)",
          "level2r": "swap, all 8x8 layers, 2 rounds", "levelrb": "rebuild, all 8x8 layers",
          "legacy": "the default with guidance +-8 logits (guidance_units \"logits\")"}



@dataclass(frozen=True)
class ResearchBoxBias(BoxBias):
    size_floor: float = 1.0  # < 1: boxes larger than size_ref count less than once
    large_inside: float = 0.0  # q > 0: a box larger than size_ref pulls inside with weight (size_ref / area) ** q
    core: float = 1.0  # < 1: every box pulls only in its central fraction, 0 in the rest of the box
    edge: str = "centre"  # "area": a cell's sign is 2 x its share inside the box - 1

    def weight(self, box: Sequence[float]) -> float:
        if self.size_power <= 0:
            return 1.0
        return float(min(MAX_SIZE_GAIN, max(self.size_floor, (self.size_ref / _area(box)) ** self.size_power)))

    def sign(self, box: Sequence[float], h: int, w: int) -> torch.Tensor:
        if self.large_inside > 0:
            inside = box_cells(box, h, w).flatten()
            pull = min(1.0, self.size_ref / _area(box)) ** self.large_inside
            return torch.where(inside, pull, -1.0).float()
        if self.edge == "area":
            return (2 * box_coverage(box, h, w).flatten() - 1).float()
        if self.core < 1:
            inside = box_cells(box, h, w).flatten()
            fraction = min(self.core, self.large_core) if _area(box) > self.size_ref else self.core
            core = box_cells(_shrink(box, fraction), h, w).flatten() & inside
            return torch.where(core, 1.0, torch.where(inside, 0.0, -1.0)).float()
        return super().sign(box, h, w)


def guide_options(spec, knobs: dict) -> dict:
    """``LayoutGuidance.from_spec`` keyword arguments for a method's ``_guide`` knobs: ``layers`` and
    ``ResearchBoxBias`` fields over the shipped box setting."""
    knobs = dict(knobs)
    out = {"layers": knobs.pop("layers")} if "layers" in knobs else {}
    if knobs:
        knobs.setdefault("size_power", guidance.DEFAULT_SIZE_POWER)
        knobs.setdefault("large_core", spec.guidance_core)
        out["bias"] = ResearchBoxBias(**knobs)
    return out


def probe_call_at(pipe: ToyPipe, captions, t: int | None = None):
    """The conditional UNet pass at timestep t (default: the sampler's first), as run_layout expects."""
    if t is None:
        return pipe.probe_call(captions)
    c = pipe.cond(captions)

    def call(x):
        with torch.no_grad():
            return pipe.unet(x, torch.full((x.shape[0],), int(t), dtype=torch.long), context=c)
    return call


def _reprobe(pipe: ToyPipe, caps, pos, boxes, spec, guide, step: int, move: bool = True):
    """Re-probe after k steps: before step ``step`` probe the sampler's current state
    at its timestep (guidance off: what the model itself now attends to) and, with ``move``, swap whole blocks
    of that state as the first edit did for the initial noise."""
    from ..layout import placement as layout_mod
    probe_layers = probe._resolve_layers(pipe.unet, spec.layers)
    c = pipe.cond(caps)

    def edit_x(i, t, x):
        if i != step:
            return x
        was, guide.active = guide.active, False
        call = lambda z: pipe.unet(z, torch.full((z.shape[0],), int(t), dtype=torch.long), context=c)  # noqa: E731
        maps = probe.probe_maps(pipe.unet, call, x, probe_layers, pos, True)
        guide.active = was
        if not move:
            return x
        x = x.clone()
        for b, item_boxes in enumerate(boxes):
            edit = layout_mod.plan_layout(maps[b], item_boxes, tuple(x.shape[-2:]), spec.method)
            x[b] = layout_mod.permute_blocks(x[b], edit.perm, edit.grid)
        return x
    return edit_x
