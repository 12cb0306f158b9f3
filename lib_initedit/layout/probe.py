"""Host-agnostic layout runner: probe -> plan -> permute, for a batch, ``rounds`` times.

The host passes the UNet module (where the hooks go) and a callable that runs it once on a noise
batch at the first timestep with the conditional context; nothing here knows about the WebUI.

One entry point for every host and for the toy benchmark::

    result = run_layout(unet, call, x, positions, boxes, **layout_options(spec),
                        candidate_noise=lambda j: <noise of the seeds candidate_seed(seed, j)>)

``layout_options(spec)`` turns the spec's layout fields into run_layout arguments, so a default changed in
``spec.py`` changes what every host and the benchmark run. ``candidate_noise`` is only called when the spec
asks for candidate pooling (``candidates`` > 1): it returns the (B, C, H, W) noise of candidate j (1..K-1) for
the batch, drawn by the host from its own noise source for the seeds ``candidate_seed(seed_b, j)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..spec import wrap_seed
from . import attention, placement

UnetCall = Callable[[torch.Tensor], Any]


@dataclass
class BoxReport:
    share_before: float
    share_after: float


@dataclass
class LayoutResult:
    noise: torch.Tensor  # (B, C, H, W), a block permutation of the input per image
    maps_before: list[torch.Tensor]  # per image (K, h, w) phrase maps on the input noise
    maps_after: list[torch.Tensor]  # per image, measured on the edited noise (or predicted)
    reports: list[list[BoxReport]]  # per image, per box
    layers: list[str]
    measured_after: bool
    probes: int = 0
    permutations: list[torch.Tensor] = field(default_factory=list)  # per image, composed over rounds
    pooled: list[list[tuple[int, int, int]]] = field(default_factory=list)  # per image: (dst, candidate, src)


def probe_maps(model: nn.Module, call: UnetCall, noise: torch.Tensor, layers: Sequence[attention.CrossAttentionLayer],
               phrase_positions: Sequence[Sequence[Sequence[int]]], stop_early: bool = True) -> list[torch.Tensor]:
    """One UNet call; per image (K, h, w): mean over layers and over each phrase's token positions."""
    columns = sorted({p for item in phrase_positions for positions in item for p in positions})
    with attention.capture_cross_attention(model, layers, columns, stop_early=stop_early) as record:
        call(noise)
    missing = [layer.name for layer in layers if layer.name not in record.maps]
    if missing:
        raise RuntimeError(f"the probe did not reach the layer(s) {', '.join(missing)}")
    stacked = torch.stack([record.maps[layer.name] for layer in layers]).mean(dim=0)  # (B, h, w, len(columns))
    index = {p: i for i, p in enumerate(columns)}
    out = []
    for b, item in enumerate(phrase_positions):
        maps = [stacked[b, :, :, [index[p] for p in positions]].mean(dim=-1) for positions in item]
        out.append(torch.stack(maps) if maps else stacked.new_zeros(0, *stacked.shape[1:3]))
    return out


def candidate_seed(seed: int, j: int) -> int:
    """The seed of candidate noise j (>= 1) of an image whose seed is ``seed`` (candidate 0 is the seed itself)."""
    if j == 0:
        return wrap_seed(seed)
    x = (int(seed) ^ (j * 0x9E3779B9)) & 0xFFFFFFFF
    x = (x * 0x85EBCA6B + j) & 0xFFFFFFFF
    return x ^ (x >> 16)


def layout_options(spec) -> dict:
    """run_layout's keyword arguments from an ``InitEditSpec``'s layout fields."""
    return dict(rounds=spec.rounds, method=spec.method, layers=spec.layers, candidates=spec.candidates)


def run_layout(model: nn.Module, call: UnetCall, noise: torch.Tensor,
               phrase_positions: Sequence[Sequence[Sequence[int]]], boxes: Sequence[Sequence[Sequence[float]]],
               rounds: int = 1, method: str = "swap", layers: str | Sequence[str] = "level",
               measure_after: bool = True, stop_early: bool = True,
               should_stop: Callable[[], bool] = lambda: False, candidates: int = 1,
               candidate_noise: Callable[[int], torch.Tensor] | None = None, smooth: float = 0.0,
               norm: str = "mean") -> LayoutResult:
    """Edit a batch of initial noises so each box's phrase tends to appear inside its box.

    phrase_positions[b][k]: token positions of box k's phrase in image b's conditioning.
    boxes[b][k]: (x0, y0, x1, y1) fractions. Images without boxes are left as they are.
    ``should_stop`` is polled between probes (interrupt/skip); the noise edited so far is returned.
    candidates > 1 (with ``candidate_noise``): the first round also probes candidates 1..K-1 and fills each
    box from the blocks that want its phrase most across them (``placement.pool_blocks``); the result is
    then made of whole blocks of the base and candidate noises, each used once, no longer a permutation.
    smooth: Gaussian blur of the maps (sigma in map cells) before ranking; norm: ``placement.NORMALISATIONS``.
    """
    probe_layers = _resolve_layers(model, layers)
    latent_hw = (int(noise.shape[-2]), int(noise.shape[-1]))
    current = noise.clone()
    maps_before: list[torch.Tensor] = []
    perms: list[torch.Tensor | None] = [None] * noise.shape[0]
    grids: list[placement.BlockGrid | None] = [None] * noise.shape[0]
    pooled: list[list[tuple[int, int, int]]] = [[] for _ in range(noise.shape[0])]
    probes = 0
    for r in range(max(1, rounds)):
        if should_stop():
            break
        maps = probe_maps(model, call, current, probe_layers, phrase_positions, stop_early)
        probes += 1
        maps_before = maps_before or maps
        cand_noise, cand_maps = [], []
        if r == 0 and candidates > 1 and candidate_noise is not None and any(boxes):
            for j in range(1, candidates):
                if should_stop():
                    break
                cand_noise.append(candidate_noise(j).to(noise.device, noise.dtype))
                cand_maps.append(probe_maps(model, call, cand_noise[-1], probe_layers, phrase_positions, stop_early))
                probes += 1
        for b, item_boxes in enumerate(boxes):
            if not item_boxes:
                continue
            edit = placement.plan_layout(maps[b], item_boxes, latent_hw, method, norm=norm, smooth=smooth)
            current[b] = placement.permute_blocks(current[b], edit.perm, edit.grid)
            perms[b] = edit.perm if perms[b] is None else perms[b][edit.perm]  # x_r = x_0[p1[p2[...]]]
            grids[b] = edit.grid
            if cand_maps:
                scores = [placement.score_maps(m[b], edit.grid, norm, smooth) for m in cand_maps]
                pool = placement.pool_blocks(edit, scores)
                current[b] = placement.replace_blocks(current[b], pool.replacements, [c[b] for c in cand_noise],
                                                   edit.grid)
                pooled[b] = pool.replacements
    if any(pooled):
        measure_after = True  # the predicted maps would not know the candidates' blocks
    measured = bool(measure_after and probes and not should_stop())
    if measured:
        maps_after = probe_maps(model, call, current, probe_layers, phrase_positions, stop_early)
        probes += 1
    else:  # predicted: the first maps moved with the blocks
        maps_after = [placement.permute_cells(m, perms[b], grids[b]) if perms[b] is not None else m
                      for b, m in enumerate(maps_before)]
    reports = [[BoxReport(share_before=before, share_after=after)
                for before, after in zip(placement.share_inside(maps_before[b], item_boxes),
                                         placement.share_inside(maps_after[b], item_boxes))]
               if maps_before else [] for b, item_boxes in enumerate(boxes)]
    return LayoutResult(noise=current, maps_before=maps_before, maps_after=maps_after, reports=reports,
                        layers=[layer.name for layer in probe_layers], measured_after=measured, probes=probes,
                        permutations=[p if p is not None else torch.empty(0, dtype=torch.long) for p in perms],
                        pooled=pooled)


def probe_layers(model: nn.Module, layers: str | Sequence[str]) -> list[attention.CrossAttentionLayer]:
    """The layers ``run_layout(layers=...)`` probes."""
    return _resolve_layers(model, layers)


def _resolve_layers(model: nn.Module, layers: str | Sequence[str]) -> list[attention.CrossAttentionLayer]:
    found = attention.find_cross_attention(model)
    if isinstance(layers, str):
        return attention.select_layers(found, layers)
    by_name = {layer.name: layer for layer in found}
    unknown = [name for name in layers if name not in by_name]
    if unknown:
        raise ValueError(f"layers: no cross-attention layer named {', '.join(unknown)}")
    return [by_name[name] for name in layers]
