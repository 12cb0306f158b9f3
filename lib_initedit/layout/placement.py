"""Layout by noise editing: attention maps -> block assignment per box -> a permutation of noise blocks.

The method of Mao et al. (MM'23) as the authors' code does it, generalised to any number of boxes:
maps are divided by their spatial mean, every cell gets the argmax label, box k takes its N_k best
cells (own-label cells by descending score, then other cells by ascending score of their label), and
the blocks are moved whole (all channels) so x_T keeps exactly its values.
"""
from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Sequence

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class BlockGrid:
    """The movable grid: ``rows x cols`` blocks of ``bh x bw`` latent cells from the top-left corner."""

    rows: int
    cols: int
    bh: int
    bw: int

    @classmethod
    def for_map(cls, map_hw: tuple[int, int], latent_hw: tuple[int, int]) -> "BlockGrid":
        (h, w), (lh, lw) = map_hw, latent_hw
        bh, bw = -(-lh // h), -(-lw // w)  # ceil: a map cell of a ceil-halved level covers this many
        return cls(rows=lh // bh, cols=lw // bw, bh=bh, bw=bw)

    @property
    def cells(self) -> int:
        return self.rows * self.cols


NORMALISATIONS = ("mean", "zscore", "max")


def normalise_maps(maps: torch.Tensor, how: str = "mean") -> torch.Tensor:
    """(K, h, w) -> each map divided by its spatial mean (the paper's ``m / m.mean()``); "zscore": minus the
    mean, over the standard deviation; "max": divided by the maximum."""
    flat = maps.flatten(1)
    if how == "mean":
        return maps / flat.mean(dim=1).clamp(min=1e-12)[:, None, None]
    if how == "zscore":
        return (maps - flat.mean(dim=1)[:, None, None]) / flat.std(dim=1).clamp(min=1e-12)[:, None, None]
    if how == "max":
        return maps / flat.amax(dim=1).clamp(min=1e-12)[:, None, None]
    raise ValueError(f"normalisation: unknown {how!r}; one of {', '.join(NORMALISATIONS)}")


def smooth_maps(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """(K, h, w) blurred by a Gaussian of ``sigma`` map cells (edges replicated); sigma 0: unchanged."""
    if sigma <= 0:
        return maps
    radius = max(1, int(math.ceil(2 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-x ** 2 / (2 * sigma ** 2))
    kernel = (kernel / kernel.sum()).to(maps.dtype)
    m = maps[:, None]
    m = F.pad(m, (radius, radius, 0, 0), mode="replicate")
    m = F.conv2d(m, kernel.view(1, 1, 1, -1))
    m = F.pad(m, (0, 0, radius, radius), mode="replicate")
    m = F.conv2d(m, kernel.view(1, 1, -1, 1))
    return m[:, 0]


def box_cells(box: Sequence[float], rows: int, cols: int) -> torch.Tensor:
    """(rows, cols) bool: cells whose centre is inside the box; never empty (the centre cell at least)."""
    x0, y0, x1, y1 = box
    cy = (torch.arange(rows, dtype=torch.float64) + 0.5) / rows
    cx = (torch.arange(cols, dtype=torch.float64) + 0.5) / cols
    inside = ((cy >= y0) & (cy < y1))[:, None] & ((cx >= x0) & (cx < x1))[None, :]
    if not inside.any():
        r = min(int((y0 + y1) / 2 * rows), rows - 1)
        c = min(int((x0 + x1) / 2 * cols), cols - 1)
        inside[r, c] = True
    return inside


def box_coverage(box: Sequence[float], rows: int, cols: int) -> torch.Tensor:
    """(rows, cols) float: the share of each cell's area that lies inside the box (0..1)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    ys = torch.arange(rows + 1, dtype=torch.float64) / rows
    xs = torch.arange(cols + 1, dtype=torch.float64) / cols
    cover_y = ((torch.minimum(ys[1:], torch.tensor(y1)) - torch.maximum(ys[:-1], torch.tensor(y0))).clamp(min=0) * rows)
    cover_x = ((torch.minimum(xs[1:], torch.tensor(x1)) - torch.maximum(xs[:-1], torch.tensor(x0))).clamp(min=0) * cols)
    return (cover_y[:, None] * cover_x[None, :]).float()


def exclusive_boxes(boxes: Sequence[Sequence[float]], rows: int, cols: int) -> torch.Tensor:
    """(K, rows, cols) bool with overlaps given to the smaller box (ties: the earlier box)."""
    raw = torch.stack([box_cells(b, rows, cols) for b in boxes]) if boxes else torch.zeros(0, rows, cols, dtype=torch.bool)
    order = sorted(range(len(boxes)), key=lambda k: (int(raw[k].sum()), k))
    taken = torch.zeros(rows, cols, dtype=torch.bool)
    out = torch.zeros_like(raw)
    for k in order:
        out[k] = raw[k] & ~taken
        taken |= out[k]
    return out


def assign_blocks(scores: torch.Tensor, regions: torch.Tensor) -> list[list[int]]:
    """Pick, for every box k, as many cells as it owns, by the paper's priority; flat indices by rank.

    scores: (K, rows, cols) normalised maps. regions: (K, rows, cols) disjoint bool masks.
    Boxes pick in order of size (smallest first) from the cells no earlier box took.
    """
    k_count = scores.shape[0]
    flat = scores.flatten(1).double()
    labels = flat.argmax(dim=0)
    label_score = flat.gather(0, labels[None])[0]
    free = torch.ones(flat.shape[1], dtype=torch.bool)
    chosen: list[list[int]] = [[] for _ in range(k_count)]
    sizes = regions.flatten(1).sum(dim=1)
    for k in sorted(range(k_count), key=lambda i: (int(sizes[i]), i)):
        need = int(sizes[k])
        own = torch.nonzero(labels == k).flatten()
        other = torch.nonzero(labels != k).flatten()
        own = own[torch.argsort(-flat[k, own], stable=True)]
        other = other[torch.argsort(label_score[other], stable=True)]
        priority = [int(i) for i in torch.cat([own, other]) if free[i]]
        chosen[k] = priority[:need]
        free[chosen[k]] = False
    return chosen


def swap_permutation(chosen: Sequence[Sequence[int]], regions: torch.Tensor) -> torch.Tensor:
    """Minimal swap (the paper's ``exchange_perfect``): ``perm[dst] = src`` over the flat grid.

    Chosen blocks already in their box stay; the others move into the box's unchosen cells (raster
    order); the blocks they displace fill the cells they left (raster order). Everything else stays.
    """
    n = regions[0].numel() if len(regions) else 0
    perm = torch.arange(n)
    moves: dict[int, int] = {}
    for k, picks in enumerate(chosen):
        box = set(torch.nonzero(regions[k].flatten()).flatten().tolist())
        incoming = sorted(i for i in picks if i not in box)
        slots = sorted(box - set(picks))
        moves.update(zip(slots, incoming))
    sources, targets = set(moves.values()), set(moves)
    vacated = sorted(sources - targets)
    displaced = sorted(targets - sources)
    for dst, src in moves.items():
        perm[dst] = src
    for dst, src in zip(vacated, displaced):
        perm[dst] = src
    return perm


def rebuild_permutation(chosen: Sequence[Sequence[int]], regions: torch.Tensor) -> torch.Tensor:
    """Full rebuild (the paper's ``create_img``): each box's cells, raster order, get its blocks by rank;
    the remaining blocks fill the cells outside all boxes in their raster order."""
    n = regions[0].numel() if len(regions) else 0
    perm = torch.empty(n, dtype=torch.long)
    used = set()
    in_box = torch.zeros(n, dtype=torch.bool)
    for k, picks in enumerate(chosen):
        cells = torch.nonzero(regions[k].flatten()).flatten().tolist()
        for dst, src in zip(cells, picks):
            perm[dst] = src
        used.update(picks)
        in_box[cells] = True
    rest_dst = torch.nonzero(~in_box).flatten().tolist()
    rest_src = [i for i in range(n) if i not in used]
    for dst, src in zip(rest_dst, rest_src):
        perm[dst] = src
    return perm


def permute_blocks(noise: torch.Tensor, perm: torch.Tensor, grid: BlockGrid) -> torch.Tensor:
    """Move whole blocks (all channels together) of (C, H, W) noise: block ``dst`` <- block ``perm[dst]``."""
    c = noise.shape[0]
    h, w = grid.rows * grid.bh, grid.cols * grid.bw
    body = noise[:, :h, :w].reshape(c, grid.rows, grid.bh, grid.cols, grid.bw)
    blocks = body.permute(1, 3, 0, 2, 4).reshape(grid.cells, c, grid.bh, grid.bw)
    moved = blocks[perm.to(blocks.device)].reshape(grid.rows, grid.cols, c, grid.bh, grid.bw)
    out = noise.clone()
    out[:, :h, :w] = moved.permute(2, 0, 3, 1, 4).reshape(c, h, w)
    return out


def permute_cells(maps: torch.Tensor, perm: torch.Tensor, grid: BlockGrid) -> torch.Tensor:
    """Apply the same block permutation to (K, h, w) maps on the movable grid (the predicted maps after)."""
    out = maps.clone()
    body = maps[:, :grid.rows, :grid.cols].reshape(maps.shape[0], -1)
    out[:, :grid.rows, :grid.cols] = body[:, perm].reshape(maps.shape[0], grid.rows, grid.cols)
    return out


def share_inside(maps: torch.Tensor, boxes: Sequence[Sequence[float]]) -> list[float]:
    """Per box k, the share of map k's attention mass that lies inside box k (cells by centre)."""
    _, h, w = maps.shape
    shares = []
    for k, box in enumerate(boxes):
        m = maps[k].double().clamp(min=0)
        total = float(m.sum())
        shares.append(float(m[box_cells(box, h, w)].sum()) / total if total > 0 else 0.0)
    return shares


@dataclass
class LayoutEdit:
    perm: torch.Tensor  # flat over the grid: perm[dst] = src
    chosen: list[list[int]]
    grid: BlockGrid
    scores: torch.Tensor | None = None  # (K, rows, cols) the normalised maps the plan used
    regions: torch.Tensor | None = None  # (K, rows, cols) the boxes' cells


def plan_layout(maps: torch.Tensor, boxes: Sequence[Sequence[float]], latent_hw: tuple[int, int],
                method: str = "swap", norm: str = "mean", smooth: float = 0.0) -> LayoutEdit:
    """maps: (K, h, w) raw probabilities of each box's phrase; returns the block permutation."""
    grid = BlockGrid.for_map((maps.shape[1], maps.shape[2]), latent_hw)
    scores = score_maps(maps, grid, norm, smooth)
    regions = exclusive_boxes(boxes, grid.rows, grid.cols)
    chosen = assign_blocks(scores, regions)
    if method == "swap":
        perm = swap_permutation(chosen, regions)
    elif method == "rebuild":
        perm = rebuild_permutation(chosen, regions)
    else:
        raise ValueError(f"method: unknown {method!r}")
    return LayoutEdit(perm=perm, chosen=chosen, grid=grid, scores=scores, regions=regions)


def score_maps(maps: torch.Tensor, grid: BlockGrid, norm: str = "mean", smooth: float = 0.0) -> torch.Tensor:
    """The maps on the movable grid, smoothed (sigma in cells) and normalised: what the assignment ranks."""
    return normalise_maps(smooth_maps(maps[:, :grid.rows, :grid.cols].float(), smooth), norm)


@dataclass
class PoolEdit:
    """Blocks taken from candidate noises: ``(dst, j, src)`` = block dst <- block src of candidate j (j >= 1)."""

    replacements: list[tuple[int, int, int]]


def pool_blocks(edit: LayoutEdit, candidate_scores: Sequence[torch.Tensor]) -> PoolEdit:
    """Candidate pooling: after ``edit`` (on the base noise), every box keeps its best blocks among its own
    and the candidates' blocks that want its phrase most (argmax label), each candidate block used once.

    candidate_scores[j - 1]: (K, rows, cols) scores of candidate j (same normalisation as ``edit.scores``).
    Per box (smallest first): the blocks now in the box (base blocks, ranked by the box phrase's score,
    own-label blocks first) and the candidates' own-label blocks compete; the top ``n_k`` stay or come in,
    a base block that lost is dropped, and the incoming blocks take the losers' cells in raster order.
    """
    scores, regions = edit.scores, edit.regions
    k_count = scores.shape[0]
    flat = scores.flatten(1).double()
    base_label = flat.argmax(dim=0)
    cand_flat = [c.flatten(1).double() for c in candidate_scores]
    cand_label = [c.argmax(dim=0) for c in cand_flat]
    used: set[tuple[int, int]] = set()
    replacements: list[tuple[int, int, int]] = []
    sizes = regions.flatten(1).sum(dim=1)
    for k in sorted(range(k_count), key=lambda i: (int(sizes[i]), i)):
        cells = torch.nonzero(regions[k].flatten()).flatten().tolist()
        entries = []  # (own, score, kind, a, b): kind 0 = base block at dst a; kind 1 = candidate a, src b
        for dst in cells:
            src = int(edit.perm[dst])
            entries.append((int(base_label[src]) == k, float(flat[k, src]), 0, dst, src))
        for j, (cf, cl) in enumerate(zip(cand_flat, cand_label), start=1):
            for src in torch.nonzero(cl == k).flatten().tolist():
                if (j, src) not in used:
                    entries.append((True, float(cf[k, src]), 1, j, src))
        entries.sort(key=lambda e: (not e[0], -e[1], e[2], e[3], e[4]))
        keep = entries[:len(cells)]
        incoming = [(e[3], e[4]) for e in keep if e[2] == 1]
        kept_dst = {e[3] for e in keep if e[2] == 0}
        free_dst = [dst for dst in cells if dst not in kept_dst]
        for dst, (j, src) in zip(free_dst, incoming):
            replacements.append((dst, j, src))
            used.add((j, src))
    return PoolEdit(replacements=replacements)


def replace_blocks(noise: torch.Tensor, replacements: Sequence[tuple[int, int, int]],
                   candidates: Sequence[torch.Tensor], grid: BlockGrid) -> torch.Tensor:
    """(C, H, W) noise with block dst replaced, whole, by block src of ``candidates[j - 1]`` (C, H, W)."""
    out = noise.clone()
    for dst, j, src in replacements:
        (r, c), (sr, sc) = divmod(dst, grid.cols), divmod(src, grid.cols)
        out[:, r * grid.bh:(r + 1) * grid.bh, c * grid.bw:(c + 1) * grid.bw] = \
            candidates[j - 1][:, sr * grid.bh:(sr + 1) * grid.bh, sc * grid.bw:(sc + 1) * grid.bw]
    return out
