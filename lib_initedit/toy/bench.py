"""Benchmark InitEdit on the toy model: layout success / IoU, reroll locality, probe cost.

    python -m lib_initedit.toy.bench --n 200 --json bench.json

Fixed seed lists: sample i of a layout cell with k objects uses noise seed 10_000 + i and prompt/box
seed 1_000 * k + i, so every method sees the same noises, prompts and boxes.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from .. import probe
from . import detect
from .data import SIZE, random_prompt
from .bench_reroll import bench_reroll
from .pipe import ToyPipe, seed_noise

METHODS = {  # key -> run_layout kwargs (None: no edit)
    "none": None,
    "paper": dict(rounds=1, method="swap", layers="paper"),
    "rebuild": dict(rounds=1, method="rebuild", layers="paper"),
    "rounds2": dict(rounds=2, method="swap", layers="paper"),
    "rounds3": dict(rounds=3, method="swap", layers="paper"),
    "level": dict(rounds=1, method="swap", layers="level"),
    # ablations: which of the two 8x8 down layers carries the signal; does a 2nd round help "level"
    "layer5": dict(rounds=1, method="swap", layers=["input_blocks.5.1.transformer_blocks.0.attn2"]),
    "level2r": dict(rounds=2, method="swap", layers="level"),
    "levelrb": dict(rounds=1, method="rebuild", layers="level"),
}
LABELS = {"none": "no edit", "paper": "paper: swap, 1 round, 1 layer", "rebuild": "full rebuild, 1 round",
          "rounds2": "swap, 2 rounds", "rounds3": "swap, 3 rounds", "level": "swap, all 8x8 down layers (2)",
          "layer5": "swap, first 8x8 layer only (input_blocks.5.1)", "level2r": "swap, all 8x8 layers, 2 rounds",
          "levelrb": "rebuild, all 8x8 layers"}


def random_boxes(rng: np.random.Generator, k: int, lo: float = 0.3, hi: float = 0.5) -> list[tuple]:
    """k non-overlapping square-ish boxes (fractions); sides shrink if placement keeps failing."""
    for attempt in range(200):
        scale = 1.0 if attempt < 100 else 0.8
        boxes = []
        for _ in range(k):
            w, h = rng.uniform(lo, hi, 2) * scale
            x0, y0 = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
            boxes.append((float(x0), float(y0), float(x0 + w), float(y0 + h)))
        if all(detect.iou(a, b) == 0 for i, a in enumerate(boxes) for b in boxes[i + 1:]):
            return boxes
    return boxes


def layout_cases(k: int, n: int):
    cases = []
    for i in range(n):
        rng = np.random.default_rng(1_000 * k + i)
        objs = random_prompt(rng, k)
        phrases = [f"{c} {s}" for c, s in objs]
        caption = " and ".join(f"a {p}" for p in phrases)
        cases.append(dict(noise_seed=10_000 + i, caption=caption, phrases=phrases,
                          colours=[c for c, _ in objs], shapes=[s for _, s in objs], boxes=random_boxes(rng, k)))
    return cases


def score(images: torch.Tensor, cases) -> dict:
    found = inside = success = shape_ok = total = 0
    ious = []
    for img, case in zip(images, cases):
        dets = detect.detect_all(img, case["colours"])
        ok = True
        for colour, shape, box in zip(case["colours"], case["shapes"], case["boxes"]):
            d = dets[colour]
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
    n = len(cases)
    return dict(n=n, success=success / n, mean_iou=float(np.mean(ious)), detected=found / total,
                centroid_in_box=inside / total, shape_match=shape_ok / max(1, found))


def run_method(pipe: ToyPipe, cases, kw) -> tuple[torch.Tensor, dict]:
    noise = torch.stack([seed_noise(c["noise_seed"]) for c in cases])
    caps = [c["caption"] for c in cases]
    info = {}
    if kw is not None:
        pos = [pipe.phrase_positions(c["caption"], c["phrases"]) for c in cases]
        res = probe.run_layout(pipe.unet, pipe.probe_call(caps), noise, pos, [c["boxes"] for c in cases],
                               measure_after=True, **kw)
        noise = res.noise
        shares = [(r.share_before, r.share_after) for item in res.reports for r in item]
        info = dict(attn_share_before=float(np.mean([s[0] for s in shares])),
                    attn_share_after=float(np.mean([s[1] for s in shares])), layers=res.layers)
    return pipe.generate(noise, caps), info


def bench_layout(pipe: ToyPipe, n: int, counts=(1, 2, 3), methods=None, log=print) -> dict:
    out = {}
    for k in counts:
        cases = layout_cases(k, n)
        for name in methods or METHODS:
            t0 = time.time()
            images, info = run_method(pipe, cases, METHODS[name])
            cell = score(images, cases) | info | dict(seconds=round(time.time() - t0, 1))
            out[f"{k}|{name}"] = cell
            log(f"  {k} obj  {name:8s} success {cell['success']:.3f}  IoU {cell['mean_iou']:.3f}  "
                f"det {cell['detected']:.3f}  ({cell['seconds']}s)")
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
    lines = ["| objects | method | success | mean IoU | detected | attn share in box before -> after |",
             "|---|---|---|---|---|---|"]
    for key, c in res.get("layout", {}).items():
        k, name = key.split("|")
        share = f"{c['attn_share_before']:.2f} -> {c['attn_share_after']:.2f}" if "attn_share_before" in c else ""
        lines.append(f"| {k} | {LABELS.get(name, name)} | {c['success']:.3f} | {c['mean_iou']:.3f} | {c['detected']:.3f} | {share} |")
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


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=200, help="samples per layout cell")
    ap.add_argument("--reroll-n", type=int, default=None, help="samples for reroll locality (default --n)")
    ap.add_argument("--counts", default="1,2,3")
    ap.add_argument("--methods", default="none,paper,rebuild,rounds2,rounds3,level")
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
        res["layout"] = bench_layout(pipe, a.n, [int(k) for k in a.counts.split(",")], a.methods.split(","))
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
