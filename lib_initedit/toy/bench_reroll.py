"""Reroll locality on the toy model: how much a rerolled region changes inside and outside (``bench.py`` runs
it), with and without "keep the rest" (``lib_initedit.reroll.keep``), through the shipped path: ``noise.reroll_batch``
for the noise, ``keep.Recorder`` on the base generation, ``keep.KeepBlend`` on the reroll.

    python -m lib_initedit.toy.bench_reroll --n 200 --json reroll.json   # this part alone, with the keep table

Per entry: ``inside`` / ``outside`` mean |delta pixel| (0..1 scale) vs the base image (same noise, no reroll),
``ratio`` = outside / inside. Keep entries (``keep <value>``, strength 1) add ``inside_vs_keep0`` (inside change
relative to keep 0 at the same feather; ``core_vs_keep0`` the same for the box's core, pixels at least 3 px
from its edge), ``outside_vs_new_seed`` (outside change relative to a new seed's,
the "global variation, strength 1.0" entry) and ``seam``: the mean squared difference between neighbouring
pixels across the box's border (one inside, one outside), divided by the same in the base image
(1 = the border is as smooth as in a plain image; a hard cut shows as > 1).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from ..reroll.keep import KeepBlend, Recorder
from ..reroll.noise import reroll_batch
from ..sampling_hooks import SamplingHooks
from ..spec import InitEditSpec, RerollRegion
from .data import SIZE, random_prompt
from .pipe import SeedStream, ToyPipe, seed_noise

KEEPS = (0.0, 0.1, 0.25, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 1.0)
FEATHERED = ((0.05, (0.0, 0.75, 1.0)),)  # (feather, keeps) measured besides feather 0
CHUNK = 50  # images per generation call (hooks see a chunk at once)


def random_box(rng: np.random.Generator, lo: float = 0.3, hi: float = 0.5) -> tuple:
    from .boxes import random_boxes

    return random_boxes(rng, 1, lo, hi)[0]


def keep_name(keep: float, feather: float = 0.0) -> str:
    return f"keep {keep:g}" + (f", feather {feather:g}" if feather else "")


def _generate(pipe: ToyPipe, x: torch.Tensor, caps: list[str], hook_for=None) -> torch.Tensor:
    """Images in chunks; ``hook_for(lo, hi)`` -> the chunk's ``SamplingHooks`` part (or None)."""
    out = []
    for lo in range(0, x.shape[0], CHUNK):
        hi = min(lo + CHUNK, x.shape[0])
        out.append(pipe.generate(x[lo:hi], caps[lo:hi], hooks=SamplingHooks([hook_for(lo, hi)]) if hook_for else None))
    return torch.cat(out)


def border_pairs(boxes, size: int = SIZE):
    """Per image, index pairs (inside pixel, outside neighbour) across the rounded box's four sides."""
    pairs = []
    for x0, y0, x1, y1 in boxes:
        a, b, c, d = round(x0 * size), round(y0 * size), round(x1 * size), round(y1 * size)
        ins, outs = [], []
        for y in range(b, d):
            if a > 0:
                ins.append((y, a)), outs.append((y, a - 1))
            if c < size:
                ins.append((y, c - 1)), outs.append((y, c))
        for x in range(a, c):
            if b > 0:
                ins.append((b, x)), outs.append((b - 1, x))
            if d < size:
                ins.append((d - 1, x)), outs.append((d, x))
        pairs.append((torch.tensor(ins, dtype=torch.long).view(-1, 2), torch.tensor(outs, dtype=torch.long).view(-1, 2)))
    return pairs


def border_energy(images: torch.Tensor, pairs) -> float:
    """Mean squared difference (0..1 scale, summed over channels) across the boxes' borders."""
    total, count = 0.0, 0
    for img, (ins, outs) in zip(images, pairs):
        if len(ins) == 0:
            continue
        d = (img[:, ins[:, 0], ins[:, 1]] - img[:, outs[:, 0], outs[:, 1]]) / 2
        total += float((d * d).sum())
        count += len(ins)
    return total / max(1, count)


def bench_reroll(pipe: ToyPipe, n: int, keeps=KEEPS, feathered=FEATHERED, log=print) -> dict:
    """Mean |delta pixel| (0..1 scale) outside / inside a rerolled box, vs global variation, and keep."""
    rng = np.random.default_rng(7)
    caps, boxes, base = [], [], []
    for i in range(n):
        objs = random_prompt(rng, int(rng.integers(1, 3)))
        caps.append(" and ".join(f"a {c} {s}" for c, s in objs))
        boxes.append(random_box(rng))
        base.append(seed_noise(20_000 + i))
    base = torch.stack(base)
    streams = lambda seeds: SeedStream(base.shape[1:], seeds)  # noqa: E731
    variants = {}
    for strength in (1.0, 0.5):
        variants[f"region, strength {strength}"] = reroll_batch(
            base, [[RerollRegion(box=boxes[i], seed=90_000 + i, strength=strength)] for i in range(n)], streams)[0]
        variants[f"global variation, strength {strength}"] = reroll_batch(
            base, [[RerollRegion(box=(0, 0, 1, 1), seed=90_000 + i, strength=strength)] for i in range(n)], streams)[0]
    # the base generation, recorded as a host records every generation
    records = []

    img0 = _generate(pipe, base, caps, lambda lo, hi: Recorder(on_complete=records.extend))
    assert len(records) == n
    masks = torch.zeros(n, SIZE, SIZE, dtype=torch.bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        masks[i, round(y0 * SIZE):round(y1 * SIZE), round(x0 * SIZE):round(x1 * SIZE)] = True
    core = torch.zeros_like(masks)  # inside, at least 3 px from the box's edge
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        core[i, round(y0 * SIZE) + 3:round(y1 * SIZE) - 3, round(x0 * SIZE) + 3:round(x1 * SIZE) - 3] = True
    pairs = border_pairs(boxes)
    base_border = border_energy(img0, pairs)

    def measure(images):
        d = ((images - img0).abs().mean(dim=1) / 2)  # (n, H, W), 0..1 scale
        inside, outside = float(d[masks].mean()), float(d[~masks].mean())
        return dict(n=n, inside=inside, outside=outside, ratio=outside / inside, inside_core=float(d[core].mean()))

    out = {}
    for name, noise in variants.items():
        out[name] = measure(_generate(pipe, noise, caps))
    new_seed = out["global variation, strength 1.0"]["outside"]
    configs = [(0.0, k) for k in keeps] + [(f, k) for f, ks in feathered for k in ks]
    keep0 = {}
    for feather, keep in configs:
        t0 = time.time()
        regions = [[RerollRegion(box=boxes[i], seed=90_000 + i, strength=1.0, feather=feather)] for i in range(n)]
        x, _ = reroll_batch(base, regions, streams)
        images = _generate(pipe, x, caps, lambda lo, hi: KeepBlend.from_regions(
            records[lo:hi], regions[lo:hi], (SIZE, SIZE), keep))
        cell = measure(images)
        keep0.setdefault(feather, cell)  # keep 0 comes first for every feather
        cell.update(keep=keep, feather=feather, default=keep == InitEditSpec().keep and feather == 0,
                    inside_vs_keep0=cell["inside"] / keep0[feather]["inside"],
                    core_vs_keep0=cell["inside_core"] / keep0[feather]["inside_core"],
                    outside_vs_new_seed=cell["outside"] / new_seed,
                    seam=border_energy(images, pairs) / base_border, seconds=round(time.time() - t0, 1))
        out[keep_name(keep, feather)] = cell
        log(f"  {keep_name(keep, feather):22s} inside {cell['inside']:.4f} outside {cell['outside']:.4f} "
            f"ratio {cell['ratio']:.3f} inside/keep0 {cell['inside_vs_keep0']:.3f} core/keep0 {cell['core_vs_keep0']:.3f} seam {cell['seam']:.3f} "
            f"({cell['seconds']}s)")
    return out


def keep_table(res: dict) -> str:
    lines = ["| reroll | inside | outside | outside/inside | inside vs keep 0 | box core vs keep 0 | outside vs new seed | seam |",
             "|---|---|---|---|---|---|---|---|"]
    for name, c in res.items():
        if "keep" in c:
            lines.append(f"| {name}{' (default)' if c.get('default') else ''} | {c['inside']:.4f} | {c['outside']:.4f} | "
                         f"{c['ratio']:.3f} | {c['inside_vs_keep0']:.3f} | {c['core_vs_keep0']:.3f} | {c['outside_vs_new_seed']:.4f} | {c['seam']:.3f} |")
        else:
            lines.append(f"| {name} | {c['inside']:.4f} | {c['outside']:.4f} | {c['ratio']:.3f} | | | | |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=5.0)
    ap.add_argument("--keeps", default=",".join(f"{k:g}" for k in KEEPS))
    ap.add_argument("--feather", type=float, default=FEATHERED[0][0], help="also measure this feather (0: none)")
    ap.add_argument("--feather-keeps", default="0,0.75,1")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from .model import load

    pipe = ToyPipe(load(), steps=a.steps, guidance=a.guidance)
    keeps = tuple(float(k) for k in a.keeps.split(","))
    feathered = ((a.feather, tuple(float(k) for k in a.feather_keeps.split(","))),) if a.feather > 0 else ()
    t0 = time.time()
    res = dict(config=dict(n=a.n, steps=a.steps, guidance=a.guidance), reroll=bench_reroll(pipe, a.n, keeps, feathered))
    res["seconds"] = round(time.time() - t0, 1)
    print(keep_table(res["reroll"]))
    print(f"total {res['seconds']}s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return res


if __name__ == "__main__":
    main()
