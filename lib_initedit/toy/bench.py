"""Benchmark InitEdit on the toy model: layout success / IoU / leak by stratum, reroll locality, probe cost.

    python -m lib_initedit.toy.bench --n 200 --json bench.json
    python -m lib_initedit.toy.bench --methods default --strata all      # what the extension does by default

Strata and their fixed seed lists: ``boxes.py``; scoring: ``score.py``; the methods (spec-like settings, "default"
= exactly the spec's defaults) and the research knobs: ``ablation.py``. ``run_method`` goes through the library's
own entry points, the ones the WebUI calls: ``probe.run_layout(..., **probe.layout_options(spec))`` edits the
noise and ``guidance.LayoutGuidance.from_spec(...)`` guides the first steps.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from ..layout import guidance, probe
from ..sampling_hooks import SamplingHooks
from ..spec import InitEditSpec
from .ablation import LABELS, METHODS, _reprobe, guide_options, probe_call_at
from .bench_reroll import bench_reroll
from .boxes import STRATA, USER_STRATA, layout_cases
from .pipe import ToyPipe, seed_noise
from .score import by_width, score


def spec_of(setting: dict) -> InitEditSpec:
    """The spec a method setting stands for: InitEditSpec() with the setting's spec fields replaced."""
    return InitEditSpec().replace(**{k: v for k, v in setting.items() if not k.startswith("_")})


# ----------------------------------------------------------------------------- running a method
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
    guide = guidance.LayoutGuidance.from_spec(pipe.unet, spec, pos, boxes,
                                              **guide_options(spec, setting.get("_guide", {})))
    edit_x = _reprobe(pipe, caps, pos, boxes, spec, guide, **setting["_reprobe"]) if "_reprobe" in setting else None
    if not guide.enabled:
        return pipe.generate(noise, caps, edit_x=edit_x), info
    images = pipe.generate(noise, caps, hooks=SamplingHooks([guide]), edit_x=edit_x)
    info["guided_calls"] = guide.calls_guided
    return images, info


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
