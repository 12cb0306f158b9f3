"""Reroll locality on the toy model: how much a rerolled region changes inside and outside (``bench.py`` runs
it), with and without "keep the rest" (``lib_initedit.reroll.keep`` with its release map,
``lib_initedit.reroll.release``), through the shipped path: ``noise.reroll_batch`` for the noise,
``keep.Recorder`` on the base generation, ``keep.KeepBlend.from_regions`` on the reroll.

    python -m lib_initedit.toy.bench_reroll --n 200 --json reroll.json   # this part alone, with the keep table
    python -m lib_initedit.toy.bench_reroll --picture keep.png           # seed image, rerolls, change maps
    python -m lib_initedit.toy.bench_reroll --seam-picture seam.png      # where the default's seam comes from

Per entry: ``inside`` / ``outside`` mean |delta pixel| (0..1 scale) vs the base image (same noise, no reroll),
``ratio`` = outside / inside. Keep entries (strength 1) add ``beyond`` / ``in_band``: the outside change beyond
the band and in it (the band of the row; rows without a band: a band of ``REFERENCE_BAND``),
``beyond_exact`` (the outside beyond the band equals the base image bit for bit: the toy has no VAE, its
image is its latent), ``inside_vs_keep0`` (inside change relative to keep 0; ``core_vs_keep0`` the same for the
box's core, pixels at least 3 px from its edge), ``outside_vs_new_seed`` (outside change relative to a new
seed's, the "global variation, strength 1.0" entry) and ``seam``: the mean squared difference between
neighbouring pixels across the box's border (one inside, one outside), divided by the same in the base image
(1 = the border is as smooth as in a plain image; a hard cut shows as > 1); ``seam_vs_keep0`` the same
relative to keep 0's in this run; ``band_edge``: the same measure across the band's outer border (vs the base
image's there). Logged and in the JSON, not in the table: ``local_seam``, the squared step across the box's
border over the squared step along it in the same images (about 1 without an edge, whatever the content),
and ``worst_local_seam``, the largest over the borders of the box grown by 0, 1, 2 ... px up to one past the
band (rows without a band: ``REFERENCE_BAND``).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..reroll.keep import BaseRecord, KeepBlend, Recorder
from ..reroll.noise import reroll_batch
from ..reroll.release import DEFAULT_SHAPE, RELEASES, band_cells_mask, distance_to_cells, region_cells
from ..sampling_hooks import Call, SamplingHooks
from ..spec import InitEditSpec, RerollRegion
from .data import SIZE, random_prompt
from .pipe import SeedStream, ToyPipe, seed_noise

@dataclass(frozen=True)
class KeepRow:
    """One keep setting of the table: band 0 is the keep without a band (every element outside the regions
    follows the base for the first keep fraction of the steps); ``soft``: the band takes part of the new
    prediction before its release (``release.Release.soft``)."""

    keep: float
    band: float = 0.0
    shape: str = DEFAULT_SHAPE
    soft: bool = False

    @property
    def name(self) -> str:
        if self.keep <= 0:
            return "keep 0"
        return f"keep {self.keep:g}" + (f", band {self.band:g} {self.shape}{' soft' if self.soft else ''}"
                                        if self.band > 0 else "")

    @property
    def is_default(self) -> bool:
        d = InitEditSpec()
        way = RELEASES[d.keep_release]
        return (self.keep == d.keep and self.band == d.keep_band
                and (self.band == 0 or (self.shape, self.soft) == (way.shape, way.soft)))

    @classmethod
    def parse(cls, text: str) -> "KeepRow":
        """"keep:band:shape[:soft]", e.g. "1:0.1:early-smooth:soft"."""
        keep, band, shape, *rest = text.split(":")
        return cls(float(keep), float(band), shape, rest == ["soft"])


ROWS = (KeepRow(0.0), KeepRow(0.8), KeepRow(1.0),
        *(KeepRow(1.0, 0.1, shape) for shape in ("linear", "smoothstep", "early-smooth")),
        KeepRow(1.0, 0.12, "smoothstep"), KeepRow(1.0, 0.15, "early-smooth"),
        *(KeepRow(1.0, 0.1, shape, True) for shape in ("linear", "smoothstep", "early-smooth")),
        *(KeepRow(1.0, 0.12, shape, True) for shape in ("smoothstep", "early-smooth")),
        KeepRow(1.0, 0.15, "smoothstep", True), KeepRow(1.0, 0.25, "smoothstep", True),
        KeepRow(1.0, 0.12, "at-once", True))  # the last two: how far a wider band or an early release gets the seam
REFERENCE_BAND = 0.1  # rows without a band report "beyond" / "in the band" for a band of this width
RINGS = 9  # borders measured: the box's, and those of the box grown by 1 .. RINGS px (the band's rings)
CHUNK = 50  # images per generation call (hooks see a chunk at once)


def random_box(rng: np.random.Generator, lo: float = 0.3, hi: float = 0.5) -> tuple:
    from .boxes import random_boxes

    return random_boxes(rng, 1, lo, hi)[0]


def _generate(pipe: ToyPipe, x: torch.Tensor, caps: list[str], hook_for=None) -> torch.Tensor:
    """Images in chunks; ``hook_for(lo, hi)`` -> the chunk's ``SamplingHooks`` part (or None)."""
    out = []
    for lo in range(0, x.shape[0], CHUNK):
        hi = min(lo + CHUNK, x.shape[0])
        out.append(pipe.generate(x[lo:hi], caps[lo:hi], hooks=SamplingHooks([hook_for(lo, hi)]) if hook_for else None))
    return torch.cat(out)


def box_cells(boxes, size: int = SIZE) -> torch.Tensor:
    """(n, size, size) bool: the rounded boxes (a pixel is inside when the box covers at least half of it)."""
    masks = torch.zeros(len(boxes), size, size, dtype=torch.bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        masks[i, round(y0 * size):round(y1 * size), round(x0 * size):round(x1 * size)] = True
    return masks


def border_pairs(boxes, size: int = SIZE):
    """Per image, index pairs (inside pixel, outside neighbour) across the rounded box's four sides."""
    return mask_border_pairs(box_cells(boxes, size))


def mask_border_pairs(masks: torch.Tensor):
    """Per image, index pairs (pixel in the mask, its 4-neighbour outside it) across the mask's border."""
    pairs = []
    for m in masks:
        h, w = m.shape
        ins, outs = [], []
        for dy, dx in ((0, -1), (0, 1), (-1, 0), (1, 0)):
            p = m.nonzero()
            q = p + torch.tensor([dy, dx])
            ok = (q[:, 0] >= 0) & (q[:, 0] < h) & (q[:, 1] >= 0) & (q[:, 1] < w)
            p, q = p[ok], q[ok]
            cross = ~m[q[:, 0], q[:, 1]]
            ins.append(p[cross]), outs.append(q[cross])
        pairs.append((torch.cat(ins), torch.cat(outs)))
    return pairs


def along_pairs(masks: torch.Tensor):
    """Per image, index pairs of neighbours running along the mask's border (both in the mask, or both out,
    each next to a pair across it): the image's own roughness right at the border, to compare the step across
    it with (``local_seam``)."""
    pairs = []
    for m in masks:
        h, w = m.shape
        a_list, b_list = [], []
        for (dy, dx), (py, px) in (((0, 1), (1, 0)), ((1, 0), (0, 1))):  # across direction, along direction
            for sy, sx in ((dy, dx), (-dy, -dx)):
                p = m.nonzero()
                q = p + torch.tensor([sy, sx])
                p2, q2 = p + torch.tensor([py, px]), q + torch.tensor([py, px])
                ok = ((q >= 0) & (q < torch.tensor([h, w]))).all(1) & ((p2 >= 0) & (p2 < torch.tensor([h, w]))).all(1) \
                    & ((q2 >= 0) & (q2 < torch.tensor([h, w]))).all(1)
                p, q, p2, q2 = p[ok], q[ok], p2[ok], q2[ok]
                sel = ~m[q[:, 0], q[:, 1]] & m[p2[:, 0], p2[:, 1]] & ~m[q2[:, 0], q2[:, 1]]
                a_list += [p[sel], q[sel]]
                b_list += [p2[sel], q2[sel]]
        pairs.append((torch.cat(a_list), torch.cat(b_list)))
    return pairs


def local_seam(images: torch.Tensor, masks: torch.Tensor) -> float:
    """The squared step across the mask's border over the squared step along it, right there, in the same
    images: about 1 for an image with no edge at the border whatever its content, > 1 for a seam."""
    return border_energy(images, mask_border_pairs(masks)) / max(border_energy(images, along_pairs(masks)), 1e-12)


def border_totals(images: torch.Tensor, pairs) -> torch.Tensor:
    """(n,) float64: per image, the summed squared difference (0..1 scale, over channels) across its pairs."""
    totals = torch.zeros(len(pairs), dtype=torch.float64)
    for i, (img, (ins, outs)) in enumerate(zip(images, pairs)):
        if len(ins):
            d = (img[:, ins[:, 0], ins[:, 1]] - img[:, outs[:, 0], outs[:, 1]]) / 2
            totals[i] = float((d * d).sum())
    return totals


def border_energy(images: torch.Tensor, pairs) -> float:
    """Mean squared difference (0..1 scale, summed over channels) across the boxes' borders."""
    return float(border_totals(images, pairs).sum()) / max(1, sum(len(ins) for ins, _ in pairs))


def ratio_interval(num: torch.Tensor, den: torch.Tensor, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % bootstrap interval of ``sum(num) / sum(den)`` over images (both (n,), paired by image): how far the
    seam ratio of one run can be from its expectation. A few images with an object edge on the border carry much
    of the sum, so at 200 samples the interval is wide."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(num), (resamples, len(num)), generator=g)
    ratios = num[idx].sum(1) / den[idx].sum(1).clamp(min=1e-12)
    lo, hi = torch.quantile(ratios, torch.tensor([0.025, 0.975], dtype=ratios.dtype))
    return float(lo), float(hi)


def cases(n: int):
    """The bench's fixed cases: captions (1-2 objects), boxes (30-50 % of the side), x_T (seed 20 000 + i) and
    the reroll regions at strength 1 (seed 90 000 + i)."""
    rng = np.random.default_rng(7)
    caps, boxes, base = [], [], []
    for i in range(n):
        objs = random_prompt(rng, int(rng.integers(1, 3)))
        caps.append(" and ".join(f"a {c} {s}" for c, s in objs))
        boxes.append(random_box(rng))
        base.append(seed_noise(20_000 + i))
    regions = [[RerollRegion(box=boxes[i], seed=90_000 + i, strength=1.0)] for i in range(n)]
    return caps, boxes, torch.stack(base), regions


def bench_reroll(pipe: ToyPipe, n: int, rows=ROWS, strengths=(1.0, 0.5), log=print) -> dict:
    """Mean |delta pixel| (0..1 scale) outside / inside a rerolled box, vs global variation, and keep."""
    caps, boxes, base, regions = cases(n)
    streams = lambda seeds: SeedStream(base.shape[1:], seeds)  # noqa: E731
    variants = {}
    for strength in sorted(set(strengths) | {1.0}, reverse=True):
        variants[f"region, strength {strength}"] = reroll_batch(
            base, [[RerollRegion(box=boxes[i], seed=90_000 + i, strength=strength)] for i in range(n)], streams)[0]
        variants[f"global variation, strength {strength}"] = reroll_batch(
            base, [[RerollRegion(box=(0, 0, 1, 1), seed=90_000 + i, strength=strength)] for i in range(n)], streams)[0]
    # the base generation, recorded as a host records every generation
    records = []

    img0 = _generate(pipe, base, caps, lambda lo, hi: Recorder(on_complete=records.extend))
    assert len(records) == n
    masks = box_cells(boxes)
    core = torch.zeros_like(masks)  # inside, at least 3 px from the box's edge
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        core[i, round(y0 * SIZE) + 3:round(y1 * SIZE) - 3, round(x0 * SIZE) + 3:round(x1 * SIZE) - 3] = True
    pairs = border_pairs(boxes)
    base_border = border_energy(img0, pairs)
    border_count = sum(len(ins) for ins, _ in pairs)
    bands = {}
    dist = torch.stack([distance_to_cells(region_cells(r, SIZE, SIZE), RINGS + 1.0) for r in regions])
    ring_masks = [masks] + [masks | (dist < tau) for tau in range(1, RINGS + 1)]

    def band_of(band: float):
        """(in the band, beyond it, pairs across the band's outer border, the base image's energy there)"""
        if band not in bands:
            inb = torch.stack([band_cells_mask(r, SIZE, SIZE, band) for r in regions]) & ~masks
            edge = mask_border_pairs(inb | masks)
            bands[band] = (inb, ~masks & ~inb, edge, border_energy(img0, edge))
        return bands[band]

    def measure(images):
        d = ((images - img0).abs().mean(dim=1) / 2)  # (n, H, W), 0..1 scale
        inside, outside = float(d[masks].mean()), float(d[~masks].mean())
        return dict(n=n, inside=inside, outside=outside, ratio=outside / inside, inside_core=float(d[core].mean()))

    out = {}
    for name, noise in variants.items():
        if name == "region, strength 1.0" and any(r.keep == 0 for r in rows):
            continue  # the same images as the keep 0 row
        out[name] = measure(_generate(pipe, noise, caps))
    new_seed = out["global variation, strength 1.0"]["outside"]
    x, _ = reroll_batch(base, regions, streams)
    keep0, keep0_totals = None, None
    for row in sorted(rows, key=lambda r: r.keep > 0):  # keep 0 first: the others compare with it
        keep, band, shape = row.keep, row.band, row.shape
        t0 = time.time()
        images = _generate(pipe, x, caps, lambda lo, hi: KeepBlend.from_regions(
            records[lo:hi], regions[lo:hi], (SIZE, SIZE), keep, band=band, shape=shape, soft=row.soft,
            fraction_of="steps"))
        cell = measure(images)
        inb, beyond, edge, edge0 = band_of(band if band > 0 else REFERENCE_BAND)
        d = ((images - img0).abs().mean(dim=1) / 2)
        far = beyond[:, None].expand_as(images)
        totals = border_totals(images, pairs)
        cell.update(keep=keep, band=band, shape=shape, soft=row.soft,
                    beyond=float(d[beyond].mean()), in_band=float(d[inb].mean()),
                    beyond_exact=bool(torch.equal(images[far], img0[far])),
                    seam=float(totals.sum()) / border_count / base_border, band_edge=border_energy(images, edge) / edge0)
        reach = math.ceil((band if band > 0 else REFERENCE_BAND) * SIZE) + 1  # the band's rings and its outer edge
        cell["local_seams"] = [local_seam(images, ring) for ring in ring_masks[:reach + 1]]
        cell["local_seam"], cell["worst_local_seam"] = cell["local_seams"][0], max(cell["local_seams"])
        keep0 = keep0 or cell
        keep0_totals = totals if keep0 is cell else keep0_totals
        cell["seam_vs_keep0_95"] = ratio_interval(totals, keep0_totals)
        cell.update(inside_vs_keep0=cell["inside"] / keep0["inside"],
                    core_vs_keep0=cell["inside_core"] / keep0["inside_core"],
                    outside_vs_new_seed=cell["outside"] / new_seed, seam_vs_keep0=cell["seam"] / keep0["seam"],
                    seconds=round(time.time() - t0, 1))
        if keep == 0:
            out["region, strength 1.0"] = {k: cell[k] for k in ("n", "inside", "outside", "ratio", "inside_core")}
        out[row.name] = cell
        log(f"  {row.name:34s} inside {cell['inside']:.4f} beyond {cell['beyond']:.4f} "
            f"band {cell['in_band']:.4f} ratio {cell['ratio']:.3f} inside/keep0 {cell['inside_vs_keep0']:.3f} "
            f"seam {cell['seam']:.3f} (/keep0 {cell['seam_vs_keep0']:.3f}, 95 % "
            f"{cell['seam_vs_keep0_95'][0]:.3f}-{cell['seam_vs_keep0_95'][1]:.3f}) band edge {cell['band_edge']:.3f} "
            f"local seam {cell['local_seam']:.3f} "
            f"worst local {cell['worst_local_seam']:.3f} "
            f"exact {cell['beyond_exact']} ({cell['seconds']}s)")
    return out


def _interval(cell: dict) -> str:
    lo_hi = cell.get("seam_vs_keep0_95")
    return f" ({lo_hi[0]:.2f}-{lo_hi[1]:.2f})" if lo_hi and cell.get("keep", 0) > 0 else ""


def keep_table(res: dict) -> str:
    lines = ["| reroll | inside | outside beyond the band | outside in the band | outside/inside | inside vs keep 0 "
             "| box core vs keep 0 | seam | seam vs keep 0 (95 %) | band's outer edge | beyond = base |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, c in res.items():
        if "keep" in c:
            default = KeepRow(c["keep"], c["band"], c["shape"], c.get("soft", False)).is_default
            lines.append(f"| {name}{' (default)' if default else ''} | {c['inside']:.4f} | {c['beyond']:.4f} | "
                         f"{c['in_band']:.4f} | {c['ratio']:.3f} | {c['inside_vs_keep0']:.3f} | "
                         f"{c['core_vs_keep0']:.3f} | "
                         f"{c['seam']:.3f} | {c['seam_vs_keep0']:.3f}{_interval(c)} | {c['band_edge']:.3f} | "
                         f"{'bit for bit' if c['beyond_exact'] else 'no'} |")
        elif name.startswith("global variation, strength 1"):
            lines.append(f"| {name} (a new seed) | {c['inside']:.4f} | | | {c['ratio']:.3f} | | | | | | |")
    return "\n".join(lines)


def _draw_band_border(im, regions, box, band: float, scale: int) -> None:
    """Draw the band's outer border (cyan) on a change map scaled ``scale`` times."""
    from PIL import ImageDraw

    m = band_cells_mask(regions, SIZE, SIZE, band) | box_cells([box])[0]
    for (py, px), (qy, qx) in zip(*[t.tolist() for t in mask_border_pairs(m[None])[0]]):
        y0, x0 = max(py, qy) * scale, max(px, qx) * scale  # the edge between the two pixels
        line = [x0, py * scale, x0, (py + 1) * scale - 1] if py == qy else [px * scale, y0, (px + 1) * scale - 1, y0]
        ImageDraw.Draw(im).line(line, fill=(0, 220, 255))


def picture(pipe: ToyPipe, out: str, seed: int = 3, box=(0.45, 0.42, 0.95, 0.95), reroll_seeds=(1000, 1001, 1002),
            scale: int = 5) -> None:
    """Seed image and three rerolls of one box at keep 0, keep 1 without a band and the default keep, with the
    change maps (mean |delta| of the three vs the seed image; white = 0.5 of the range or more). The band's
    outer border is drawn in cyan on the default row's change map."""
    from PIL import Image, ImageDraw

    from ..demo import _change_pil, _draw_box, _to_pil

    cap = "a red circle and a blue square"
    base = seed_noise(seed)[None]
    regions = [[RerollRegion(box=box, seed=s)] for s in reroll_seeds]
    n = len(reroll_seeds)
    x, _ = reroll_batch(base.expand(n, *base.shape[1:]), regions, lambda seeds: SeedStream(base.shape[1:], seeds))
    rec = Recorder()
    img0 = pipe.generate(base, [cap], hooks=SamplingHooks([rec]))[0]
    d = InitEditSpec()
    rows = [(0.0, 0.0, "keep 0 (the reroll alone)"), (1.0, 0.0, "keep 1, no band"),
            (d.keep, d.keep_band, f"keep {d.keep:g}, band {d.keep_band:g} (default)")]
    S = SIZE * scale
    pad, label_h = 6, 14
    row_h = label_h + S + label_h + pad
    sheet = Image.new("RGB", (pad + (n + 2) * (S + pad), len(rows) * row_h), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for r, (keep, band, tag) in enumerate(rows):
        spec = d.replace(keep=keep, keep_band=band)
        blend = KeepBlend.from_spec(rec.records * n, regions, (SIZE, SIZE), spec)
        imgs = pipe.generate(x, [cap] * n, hooks=SamplingHooks([blend]))
        tiles = [_to_pil(img0, scale)] + [_draw_box(_to_pil(i, scale), box, (255, 0, 255)) for i in imgs]
        change = _draw_box(_change_pil(imgs, img0, S), box, (255, 0, 255), 1)
        if band > 0:
            _draw_band_border(change, regions[0], box, band, scale)
        y = r * row_h + label_h
        for c, (tile, text) in enumerate(zip(tiles + [change], ["seed image"] + [f"reroll {k + 1}" for k in range(n)]
                                             + ["change"])):
            sheet.paste(tile, (pad + c * (S + pad), y))
            draw.text((pad + c * (S + pad), y + S + 1), text if c else ("seed image" if r == 0 else ""),
                      fill=(220, 220, 220))
        draw.text((pad + (S + pad), y - label_h + 1), tag, fill=(255, 255, 255))
    sheet.save(out)


def seam_picture(pipe: ToyPipe, out: str, n: int = 200, k: int = 8, scale: int = 4) -> None:
    """Where the default's seam comes from: of the bench's first ``n`` cases, the ``k`` whose squared step across
    the box border grew most from keep 0 to the default keep. Per row: the image without the reroll, keep 0, the
    default, and the default's change map (box magenta, the band's outer border cyan)."""
    from PIL import Image, ImageDraw

    from ..demo import _change_pil, _draw_box, _to_pil

    caps, boxes, base, regions = cases(n)
    x, _ = reroll_batch(base, regions, lambda seeds: SeedStream(base.shape[1:], seeds))
    records = []
    img0 = _generate(pipe, base, caps, lambda lo, hi: Recorder(on_complete=records.extend))
    spec = InitEditSpec()
    keep0 = _generate(pipe, x, caps)
    default = _generate(pipe, x, caps, lambda lo, hi: KeepBlend.from_spec(records[lo:hi], regions[lo:hi], (SIZE, SIZE), spec))
    pairs = border_pairs(boxes)
    worst = (border_totals(default, pairs) - border_totals(keep0, pairs)).argsort(descending=True)[:k].tolist()
    S, pad, label_h = SIZE * scale, 4, 14
    sheet = Image.new("RGB", (pad + 4 * (S + pad), label_h + k * (S + pad)), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for c, text in enumerate(("without the reroll", "keep 0", f"keep {spec.keep:g}, band {spec.keep_band:g}", "change")):
        draw.text((pad + c * (S + pad), 1), text, fill=(220, 220, 220))
    for r, i in enumerate(worst):
        tiles = [_to_pil(img0[i], scale)] + [_draw_box(_to_pil(im[i], scale), boxes[i], (255, 0, 255), 1)
                                             for im in (keep0, default)]
        change = _draw_box(_change_pil(default[i:i + 1], img0[i], S), boxes[i], (255, 0, 255), 1)
        _draw_band_border(change, regions[i], boxes[i], spec.keep_band, scale)
        for c, tile in enumerate(tiles + [change]):
            sheet.paste(tile, (pad + c * (S + pad), label_h + r * (S + pad)))
    sheet.save(out)


def keep_cost(repeats: int = 20) -> dict:
    """Milliseconds the keep step adds, without and with a band (the default release), at SD 512 (4x64x64) and
    SDXL 1024 (4x128x128) latents, batch 2: building the blend (masks and release maps, once a batch) and one
    call's blend."""
    out = {}
    for name, (c, h, w) in (("SD 512", (4, 64, 64)), ("SDXL 1024", (4, 128, 128))):
        base = [BaseRecord([torch.randn(c, h, w)], True, [0.0]) for _ in range(2)]
        regions = [[RerollRegion(box=(0.3, 0.25, 0.62, 0.7), seed=1)], [RerollRegion(box=(0.1, 0.5, 0.4, 0.9), seed=2)]]
        x = torch.randn(2, c, h, w)
        for band in (0.0, InitEditSpec().keep_band or 0.1, 0.25):
            t0 = time.perf_counter()
            for _ in range(repeats):
                blend = KeepBlend.from_spec(base, regions, (h, w), InitEditSpec(keep=1.0, keep_band=band))
            build = (time.perf_counter() - t0) / repeats * 1000
            t0 = time.perf_counter()
            for _ in range(repeats):
                blend.after_call(Call.plain(0, 1), x)
            call = (time.perf_counter() - t0) / repeats * 1000
            out[f"{name}, band {band:g}"] = dict(build_ms=round(build, 2), call_ms=round(call, 3))
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=5.0)
    ap.add_argument("--rows", default=None, help="keep:band:shape[:soft],... (default: the ROWS table)")
    ap.add_argument("--strengths", default="1,0.5", help="strengths of the region / global variation entries")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    ap.add_argument("--picture", default=None, help="write the keep picture (PNG) instead of the table")
    ap.add_argument("--cost", action="store_true", help="time the keep step with and without a band instead")
    ap.add_argument("--seam-picture", default=None,
                    help="write the picture of the cases whose seam grew most at the default keep (PNG) instead")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.cost:
        res = keep_cost()
        for k, v in res.items():
            print(f"{k:22s} build {v['build_ms']:8.2f} ms   one call {v['call_ms']:7.3f} ms")
        return res
    from .model import load

    pipe = ToyPipe(load(), steps=a.steps, guidance=a.guidance)
    if a.picture:
        picture(pipe, a.picture)
        return {}
    if a.seam_picture:
        seam_picture(pipe, a.seam_picture, n=a.n)
        return {}
    rows = ROWS if a.rows is None else tuple(KeepRow.parse(r) for r in a.rows.split(","))
    strengths = tuple(float(s) for s in a.strengths.split(","))
    t0 = time.time()
    res = dict(config=dict(n=a.n, steps=a.steps, guidance=a.guidance),
               reroll=bench_reroll(pipe, a.n, rows, strengths))
    res["seconds"] = round(time.time() - t0, 1)
    print(keep_table(res["reroll"]))
    print(f"total {res['seconds']}s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return res


if __name__ == "__main__":
    main()
