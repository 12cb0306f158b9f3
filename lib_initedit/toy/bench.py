"""Benchmark InitEdit on the toy model: layout success / IoU / leak by stratum, reroll locality, probe cost.

    python -m lib_initedit.toy.bench --n 200 --json bench.json
    python -m lib_initedit.toy.bench --methods default --strata all      # what the extension does by default

Fixed seed lists: sample i of a cell uses noise seed 10_000 + i; its prompt and boxes come from seed
1_000 * k + i for the random-box strata (k objects) and STRATA[name].seed + i for the others, so every
method sees the same noises, prompts and boxes.

A method is a spec-like setting: a dict of ``InitEditSpec`` fields (``METHODS``), applied to ``InitEditSpec()``;
"default" is ``{}``, i.e. exactly the spec's defaults. ``run_method`` goes through the library's own entry
points, the ones the WebUI calls: ``probe.run_layout(..., **probe.layout_options(spec))`` edits the noise and
``guidance.LayoutGuidance.from_spec(...)`` guides the first steps. Keys starting with "_" are research knobs
that no spec field carries (``_probe``: extra run_layout arguments; ``_probe_t``: the probe timestep).
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..layout import guidance, probe
from ..sampling_hooks import SamplingHooks
from ..spec import InitEditSpec
from . import detect
from .data import SIZE, random_prompt
from .bench_reroll import bench_reroll
from .pipe import ToyPipe, seed_noise

NO_SIZE = dict(size_power=0.0)  # the same bias for every box size
METHODS = {  # key -> spec-like setting: InitEditSpec fields (None: no edit)
    "none": None,
    "default": {},
    "paper": dict(rounds=1, method="swap", layers="paper", guidance=0.0),
    "rebuild": dict(rounds=1, method="rebuild", layers="paper", guidance=0.0),
    "rounds2": dict(rounds=2, method="swap", layers="paper", guidance=0.0),
    "rounds3": dict(rounds=3, method="swap", layers="paper", guidance=0.0),
    "level": dict(rounds=1, method="swap", layers="level", guidance=0.0),
    "layer5": dict(rounds=1, method="swap", layers="level", guidance=0.0,
                   _probe=dict(layers=["input_blocks.5.1.transformer_blocks.0.attn2"])),
    "level2r": dict(rounds=2, method="swap", layers="level", guidance=0.0),
    "levelrb": dict(rounds=1, method="rebuild", layers="level", guidance=0.0),
    # issue 14 ablations, on top of "level" (swap, 1 round, both 8x8 down layers)
    "g4": dict(guidance=4.0, guidance_steps=0.3, _guide=NO_SIZE),
    "g4only": dict(guidance=4.0, guidance_steps=0.3, _noedit=True, _guide=NO_SIZE),
    "g4lvl": dict(guidance=4.0, guidance_steps=0.3, _guide=dict(size_power=0.0, layers="level")),
    "g4down": dict(guidance=4.0, guidance_steps=0.3, _guide=dict(size_power=0.0, layers="down")),
    "g2": dict(guidance=2.0, guidance_steps=0.3, _guide=NO_SIZE),
    "g8": dict(guidance=8.0, guidance_steps=0.3, _guide=NO_SIZE),
    "g4s5": dict(guidance=4.0, guidance_steps=0.5, _guide=NO_SIZE),
    "g4s15": dict(guidance=4.0, guidance_steps=0.15, _guide=NO_SIZE),
    "g4size": dict(guidance=4.0, guidance_steps=0.3, _guide=dict(size_power=1.0)),
    "g8s5": dict(guidance=8.0, guidance_steps=0.5, _guide=NO_SIZE),
    "g8s5size": dict(guidance=8.0, guidance_steps=0.5, _guide=dict(size_power=1.0)),
    "pool4g8s5": dict(guidance=8.0, guidance_steps=0.5, _probe=dict(candidates=4), _guide=NO_SIZE),
    "g12s5size": dict(guidance=12.0, guidance_steps=0.5, _guide=dict(size_power=1.0)),
    "g16s5size": dict(guidance=16.0, guidance_steps=0.5, _guide=dict(size_power=1.0)),
    "g8s7size": dict(guidance=8.0, guidance_steps=0.7, _guide=dict(size_power=1.0)),
    "g12s7size": dict(guidance=12.0, guidance_steps=0.7, _guide=dict(size_power=1.0)),
    "g12s5core": dict(guidance=12.0, guidance_steps=0.5, _guide=dict(size_power=1.0, core=0.5)),
    "g12s5r2": dict(guidance=12.0, guidance_steps=0.5, rounds=2, _guide=dict(size_power=1.0)),
    "area": dict(_guide=dict(edge="area")),
    "floor05": dict(_guide=dict(size_floor=0.5)),
    "lin1": dict(_guide=dict(large_inside=1.0)),
    "lcore05": dict(_guide=dict(large_core=0.5)),
    "lcore07": dict(_guide=dict(large_core=0.7)),
    "lin2": dict(_guide=dict(large_inside=2.0)),
    "floor025": dict(_guide=dict(size_floor=0.25)),
    "reprobe1": dict(_reprobe=dict(step=1)),
    "reprobe2": dict(_reprobe=dict(step=2)),
    "reprobe4": dict(_reprobe=dict(step=4)),
    "reprobe2ng": dict(guidance=0.0, _reprobe=dict(step=2)),
    "pool4": dict(guidance=0.0, _probe=dict(candidates=4)),
    "pool8": dict(guidance=0.0, _probe=dict(candidates=8)),
    "pool4g4": dict(guidance=4.0, guidance_steps=0.3, _probe=dict(candidates=4), _guide=NO_SIZE),
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
          "level2r": "swap, all 8x8 layers, 2 rounds", "levelrb": "rebuild, all 8x8 layers"}


def spec_of(setting: dict) -> InitEditSpec:
    """The spec a method setting stands for: InitEditSpec() with the setting's spec fields replaced."""
    return InitEditSpec().replace(**{k: v for k, v in setting.items() if not k.startswith("_")})


# ----------------------------------------------------------------------------- strata
def _disjoint(boxes) -> bool:
    return all(detect.iou(a, b) == 0 for i, a in enumerate(boxes) for b in boxes[i + 1:])


def random_boxes(rng: np.random.Generator, k: int, lo: float = 0.3, hi: float = 0.5) -> list[tuple]:
    """k non-overlapping square-ish boxes (fractions); sides shrink if placement keeps failing."""
    for attempt in range(200):
        scale = 1.0 if attempt < 100 else 0.8
        boxes = []
        for _ in range(k):
            w, h = rng.uniform(lo, hi, 2) * scale
            x0, y0 = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
            boxes.append((float(x0), float(y0), float(x0 + w), float(y0 + h)))
        if _disjoint(boxes):
            return boxes
    return boxes


def thin_boxes(rng: np.random.Generator, k: int) -> list[tuple]:
    """k non-overlapping boxes with aspect ratio 2.5-4 (long side 0.5-0.8), each horizontal or vertical."""
    for _ in range(500):
        boxes = []
        for _ in range(k):
            long = rng.uniform(0.5, 0.8)
            short = long / rng.uniform(2.5, 4.0)
            w, h = (long, short) if rng.random() < 0.5 else (short, long)
            x0, y0 = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
            boxes.append((float(x0), float(y0), float(x0 + w), float(y0 + h)))
        if _disjoint(boxes):
            return boxes
    raise RuntimeError("thin boxes: no placement found")


def adjacent_boxes(rng: np.random.Generator, k: int) -> list[tuple]:
    """k boxes touching in a row or a column: a span of 0.6-1.0 cut into k equal parts, across 0.3-0.5."""
    span, across = rng.uniform(0.6, 1.0), rng.uniform(0.3, 0.5)
    a0, c0 = rng.uniform(0, 1 - span), rng.uniform(0, 1 - across)
    cuts = [a0 + span * j / k for j in range(k + 1)]
    row = rng.random() < 0.5
    return [(float(cuts[j]), float(c0), float(cuts[j + 1]), float(c0 + across)) if row else
            (float(c0), float(cuts[j]), float(c0 + across), float(cuts[j + 1])) for j in range(k)]


def border_boxes(rng: np.random.Generator, k: int) -> list[tuple]:
    """k non-overlapping boxes (sides 0.3-0.45), each touching the image border (an edge or a corner)."""
    for _ in range(500):
        boxes = []
        for _ in range(k):
            w, h = rng.uniform(0.3, 0.45, 2)
            x0, y0 = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
            side = int(rng.integers(0, 4))
            if side == 0:
                x0 = 0.0
            elif side == 1:
                x0 = 1.0 - w
            elif side == 2:
                y0 = 0.0
            else:
                y0 = 1.0 - h
            boxes.append((float(x0), float(y0), float(min(1.0, x0 + w)), float(min(1.0, y0 + h))))
        if _disjoint(boxes):
            return boxes
    raise RuntimeError("border boxes: no placement found")


@dataclass(frozen=True)
class Stratum:
    k: int
    boxes: Callable
    seed: int  # prompt/box seed of sample i: seed + i (random boxes: 1_000 * k + i, as before)
    label: str


STRATA = {
    "1": Stratum(1, random_boxes, 1_000, "random boxes, 1 object"),
    "2": Stratum(2, random_boxes, 2_000, "random boxes, 2 objects"),
    "3": Stratum(3, random_boxes, 3_000, "random boxes, 3 objects"),
    "small1": Stratum(1, lambda r, k: random_boxes(r, k, 0.2, 0.3), 110_000, "small box (side 0.2-0.3), 1 object"),
    "small2": Stratum(2, lambda r, k: random_boxes(r, k, 0.2, 0.3), 120_000, "small boxes, 2 objects"),
    "large1": Stratum(1, lambda r, k: random_boxes(r, k, 0.6, 0.9), 210_000, "large box (side 0.6-0.9), 1 object"),
    "thin2": Stratum(2, thin_boxes, 320_000, "thin boxes (aspect 2.5-4), 2 objects"),
    "adjacent2": Stratum(2, adjacent_boxes, 420_000, "2 touching boxes in a row/column"),
    "adjacent3": Stratum(3, adjacent_boxes, 430_000, "3 touching boxes in a row/column"),
    "border2": Stratum(2, border_boxes, 520_000, "2 boxes at the image border"),
    "four4": Stratum(4, lambda r, k: random_boxes(r, k, 0.25, 0.4), 640_000, "4 objects, random boxes 0.25-0.4"),
}
USER_STRATA = ("small1", "small2", "large1", "thin2", "adjacent2", "adjacent3", "border2", "four4")


def layout_cases(k: int | str, n: int):
    """The n cases of a stratum (a key of STRATA; an int k means the random-box stratum with k objects)."""
    st = STRATA[str(k)]
    cases = []
    for i in range(n):
        rng = np.random.default_rng(st.seed + i)
        objs = random_prompt(rng, st.k)
        phrases = [f"{c} {s}" for c, s in objs]
        caption = " and ".join(f"a {p}" for p in phrases)
        cases.append(dict(noise_seed=10_000 + i, caption=caption, phrases=phrases,
                          colours=[c for c, _ in objs], shapes=[s for _, s in objs], boxes=st.boxes(rng, st.k)))
    return cases


# ----------------------------------------------------------------------------- scoring
def score(images: torch.Tensor, cases, min_area: int = 6) -> dict:
    """success: every object's centroid in its box; leak: some phrase's colour also forms a second component
    (>= min_area px) or a component whose centroid is outside the box."""
    found = inside = success = shape_ok = total = leaks = 0
    ious = []
    for img, case in zip(images, cases):
        labels = detect.label_pixels(img)
        ok, leak = True, False
        for colour, shape, box in zip(case["colours"], case["shapes"], case["boxes"]):
            comps = [c for c in detect.components(labels == detect.NAMES.index(colour)) if len(c) >= min_area]
            outside = [c for c in comps if not _centroid_in(c, box)]
            leak |= len(comps) >= 2 or bool(outside)
            d = detect.detect(img, colour, min_area, labels)
            total += 1
            if d is None:
                ok = False
                ious.append(0.0)
                continue
            found += 1
            shape_ok += d.shape == shape
            cx, cy = d.cx / SIZE, d.cy / SIZE
            hit = box[0] <= cx <= box[2] and box[1] <= cy <= box[3]
            inside += hit
            ok &= hit
            ious.append(detect.iou([v / SIZE for v in d.box], box))
        success += ok
        leaks += leak
    n = len(cases)
    return dict(n=n, success=success / n, mean_iou=float(np.mean(ious)), leak=leaks / n, detected=found / total,
                centroid_in_box=inside / total, shape_match=shape_ok / max(1, found))


# The toy's objects are 7-14 px wide (radius 3.5-7 of 32 px) and never overlap in its training data (1 px gap):
# boxes in a row narrower than 8 px (0.25) ask for centres closer than any two training objects ever were.
NARROW = 8 / SIZE


def by_width(images: torch.Tensor, cases, narrow: float = NARROW) -> dict:
    """Success of the cases whose narrowest box side is < ``narrow`` and of the others (adjacent strata)."""
    out = {}
    for name, pick in (("narrow", lambda w: w < narrow), ("wide", lambda w: w >= narrow)):
        idx = [i for i, c in enumerate(cases) if pick(min(min(b[2] - b[0], b[3] - b[1]) for b in c["boxes"]))]
        if idx:
            part = score(images[idx], [cases[i] for i in idx])
            out[f"success_{name}"], out[f"n_{name}"] = part["success"], len(idx)
    return out


def _centroid_in(comp, box) -> bool:
    cy = (sum(p[0] for p in comp) / len(comp) + 0.5) / SIZE
    cx = (sum(p[1] for p in comp) / len(comp) + 0.5) / SIZE
    return box[0] <= cx <= box[2] and box[1] <= cy <= box[3]


# ----------------------------------------------------------------------------- running a method
def probe_call_at(pipe: ToyPipe, captions, t: int | None = None):
    """The conditional UNet pass at timestep t (default: the sampler's first), as run_layout expects."""
    if t is None:
        return pipe.probe_call(captions)
    c = pipe.cond(captions)

    def call(x):
        with torch.no_grad():
            return pipe.unet(x, torch.full((x.shape[0],), int(t), dtype=torch.long), context=c)
    return call


def run_method(pipe: ToyPipe, cases, setting) -> tuple[torch.Tensor, dict]:
    """Images of the cases under a method setting (None: no edit), through the extension's own entry points."""
    noise = torch.stack([seed_noise(c["noise_seed"]) for c in cases])
    caps = [c["caption"] for c in cases]
    info: dict = {}
    if setting is None:
        return pipe.generate(noise, caps), info
    spec = spec_of(setting)
    pos = [pipe.phrase_positions(c["caption"], c["phrases"]) for c in cases]
    boxes = [c["boxes"] for c in cases]
    seeds = [c["noise_seed"] for c in cases]
    if not setting.get("_noedit"):
        options = probe.layout_options(spec) | setting.get("_probe", {})
        res = probe.run_layout(pipe.unet, probe_call_at(pipe, caps, setting.get("_probe_t")), noise, pos, boxes,
                               measure_after=True, candidate_noise=lambda j: torch.stack(
                                   [seed_noise(probe.candidate_seed(s, j)) for s in seeds]), **options)
        shares = [(r.share_before, r.share_after) for item in res.reports for r in item]
        info = dict(attn_share_before=float(np.mean([s[0] for s in shares])),
                    attn_share_after=float(np.mean([s[1] for s in shares])), layers=res.layers, probes=res.probes)
        noise = res.noise
    guide = guidance.LayoutGuidance.from_spec(pipe.unet, spec, pos, boxes, **setting.get("_guide", {}))
    edit_x = _reprobe(pipe, caps, pos, boxes, spec, guide, **setting["_reprobe"]) if "_reprobe" in setting else None
    if not guide.enabled:
        return pipe.generate(noise, caps, edit_x=edit_x), info
    images = pipe.generate(noise, caps, hooks=SamplingHooks([guide]), edit_x=edit_x)
    info["guided_calls"] = guide.calls_guided
    return images, info


def _reprobe(pipe: ToyPipe, caps, pos, boxes, spec, guide, step: int, move: bool = True):
    """Research (issue 14, "re-probe after k steps"): before step ``step`` probe the sampler's current state
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


def bench_layout(pipe: ToyPipe, n: int, counts=(1, 2, 3), methods=None, log=None, strata=()) -> dict:
    """Cells keyed "<stratum>|<method>"; the random-box strata are the object counts ("1|default")."""
    log = log or (lambda line: print(line, flush=True))
    out = {}
    for key in [str(k) for k in counts] + [s for s in strata if s not in {str(k) for k in counts}]:
        cases = layout_cases(key, n)
        for name in methods or METHODS:
            t0 = time.time()
            images, info = run_method(pipe, cases, METHODS[name])
            cell = score(images, cases) | info | dict(seconds=round(time.time() - t0, 1))
            if key.startswith("adjacent"):
                cell |= by_width(images, cases)
            out[f"{key}|{name}"] = cell
            widths = "".join(f"  {w} {cell[f'success_{w}']:.3f} (n={cell[f'n_{w}']})" for w in ("narrow", "wide")
                             if f"success_{w}" in cell)
            log(f"  {key:9s} {name:10s} success {cell['success']:.3f}  IoU {cell['mean_iou']:.3f}  "
                f"leak {cell['leak']:.3f}  det {cell['detected']:.3f}{widths}  ({cell['seconds']}s)")
    return out


def bench_cost(pipe: ToyPipe, batch: int = 32, reps: int = 3) -> dict:
    cases = layout_cases(2, batch)
    noise = torch.stack([seed_noise(c["noise_seed"]) for c in cases])
    caps = [c["caption"] for c in cases]
    pos = [pipe.phrase_positions(c["caption"], c["phrases"]) for c in cases]
    boxes = [c["boxes"] for c in cases]

    def best(fn):
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return min(ts)

    call = pipe.probe_call(caps)
    gen = best(lambda: pipe.generate(noise, caps))
    full_call = best(lambda: call(noise))
    layout1 = best(lambda: probe.run_layout(pipe.unet, call, noise, pos, boxes, measure_after=False))
    layout1_full = best(lambda: probe.run_layout(pipe.unet, call, noise, pos, boxes, measure_after=False,
                                                 stop_early=False))
    return dict(batch=batch, steps=pipe.steps, generation_s=gen, unet_call_s=full_call,
                layout_1round_s=layout1, layout_ratio=layout1 / gen,
                layout_no_early_stop_ratio=layout1_full / gen, unet_call_ratio=full_call / gen)


def table(res: dict) -> str:
    lines = ["| stratum | method | success | mean IoU | leak | detected | attn share in box before -> after |",
             "|---|---|---|---|---|---|---|"]
    for key, c in res.get("layout", {}).items():
        k, name = key.split("|")
        share = f"{c['attn_share_before']:.2f} -> {c['attn_share_after']:.2f}" if "attn_share_before" in c else ""
        leak = f"{c['leak']:.3f}" if "leak" in c else ""
        lines.append(f"| {k} | {LABELS.get(name, name)} | {c['success']:.3f} | {c['mean_iou']:.3f} | {leak} | "
                     f"{c['detected']:.3f} | {share} |")
    if res.get("layout"):
        lines += ["", pivot(res["layout"])]
    if "reroll" in res:
        lines += ["", "| reroll | mean abs delta inside | outside | outside/inside |", "|---|---|---|---|"]
        for name, c in res["reroll"].items():
            lines.append(f"| {name} | {c['inside']:.4f} | {c['outside']:.4f} | {c['ratio']:.3f} |")
    if "cost" in res:
        c = res["cost"]
        lines += ["", f"probe cost (batch {c['batch']}, {c['steps']}-step DDIM+CFG generation = 1): "
                      f"1-round layout {c['layout_ratio']:.3f}, without early stop {c['layout_no_early_stop_ratio']:.3f}, "
                      f"one full UNet call {c['unet_call_ratio']:.3f}"]
    return "\n".join(lines)


def pivot(layout: dict, field: str = "success") -> str:
    """Methods as rows, strata as columns: success (leak) per cell."""
    strata = list(dict.fromkeys(key.split("|")[0] for key in layout))
    methods = list(dict.fromkeys(key.split("|")[1] for key in layout))
    lines = ["| method | " + " | ".join(strata) + " |", "|---|" + "---|" * len(strata)]
    for m in methods:
        row = []
        for st in strata:
            c = layout.get(f"{st}|{m}")
            row.append("" if c is None else f"{c[field]:.2f}" + (f" ({c['leak']:.2f})" if "leak" in c else ""))
        lines.append(f"| {m} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=200, help="samples per layout cell")
    ap.add_argument("--reroll-n", type=int, default=None, help="samples for reroll locality (default --n)")
    ap.add_argument("--counts", default="1,2,3")
    ap.add_argument("--methods", default="none,paper,level,default")
    ap.add_argument("--strata", default="", help="comma list of STRATA keys besides --counts; 'user' = "
                                                 + ",".join(USER_STRATA) + "; 'all' = every stratum")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=5.0)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--threads", type=int, default=1, help="1 is fastest on a shared CPU")
    ap.add_argument("--skip", default="", help="comma list of: layout,reroll,cost")
    ap.add_argument("--json", default=None)
    ap.add_argument("--merge", nargs="*", default=None, help="merge JSON results of split runs, print the table")
    a = ap.parse_args(argv)
    if a.merge:
        res = {}
        for path in a.merge:
            with open(path) as f:
                part = json.load(f)
            for key, val in part.items():
                res[key] = res.get(key, {}) | val if isinstance(val, dict) and key != "config" else val
        print(table(res))
        if a.json:
            with open(a.json, "w") as f:
                json.dump(res, f, indent=1)
        return res
    torch.set_num_threads(a.threads)
    from .model import load

    pipe = ToyPipe(load(a.weights), steps=a.steps, guidance=a.guidance)
    skip = set(filter(None, a.skip.split(",")))
    res: dict = dict(config=dict(n=a.n, steps=a.steps, guidance=a.guidance, probe_t=pipe.t_first))
    t0 = time.time()
    if "layout" not in skip:
        strata = [t for part in a.strata.split(",") if part
                  for t in (USER_STRATA if part in ("user", "all") else (part,))]
        unknown = [t for t in strata + a.methods.split(",") if t not in STRATA and t not in METHODS]
        if unknown:
            ap.error(f"unknown strata / methods: {', '.join(unknown)}")
        res["layout"] = bench_layout(pipe, a.n, [k for k in a.counts.split(",") if k], a.methods.split(","),
                                     strata=strata)
    if "reroll" not in skip:
        res["reroll"] = bench_reroll(pipe, a.reroll_n or a.n)
    if "cost" not in skip:
        res["cost"] = bench_cost(pipe, batch=min(32, a.n))
    res["seconds"] = round(time.time() - t0, 1)
    print(table(res))
    print(f"total {res['seconds']}s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return res


if __name__ == "__main__":
    main()
