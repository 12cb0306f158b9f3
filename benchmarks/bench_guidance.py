#!/usr/bin/env python3
"""Cost of layout guidance (``lib_initedit.layout.guidance``) on the ldm-style test UNet at SD1.5 width.

A script, not a test. Run from the repository root:

    python benchmarks/bench_guidance.py --out docs/bench-guidance.json     # SD1.5 width (320 / 768), 64x64 latent
    python benchmarks/bench_guidance.py --quick                            # width 32: a smoke run

One CFG model call (batch 2: an unconditional and a conditional row, fp32, torch.no_grad, one thread), three
variants measured side by side, interleaved (the order rotates every repeat), process CPU time:

    plain      no guidance installed
    inactive   guidance installed, but the step is past the guided fraction (the wrappers pass through)
    guided     guidance active on every attn2 (two boxes, two-token phrases, strength 4)

Ratios are medians of per-repeat ratios against "plain" of the same repeat. A generation guided during a
fraction f of its steps costs ``1 + f * (guided - 1) + (1 - f) * (inactive - 1)`` times the plain one.
Peak memory: the peak of the live bytes of the CPU allocator during one call, above its level at the start,
from torch.profiler(profile_memory=True) allocation / free events.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from lib_initedit.layout.guidance import LayoutGuidance, select_guided_layers  # noqa: E402
from lib_initedit.sampling_hooks import SamplingHooks  # noqa: E402
from tests.ldm_like import UNetModel  # noqa: E402


def peak_bytes(fn) -> int:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
        del out
    events = prof.profiler.kineto_results.events()
    mem = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
    live = list(itertools.accumulate(nbytes for _, nbytes in mem)) or [0]
    return max(0, max(live))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="width 32, 2 repeats")
    ap.add_argument("--width", type=int, default=None, help="model_channels (SD1.5: 320)")
    ap.add_argument("--context-dim", type=int, default=None, help="default 768 (SD1.5)")
    ap.add_argument("--latent", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--strength", type=float, default=4.0)
    ap.add_argument("--fraction", type=float, default=None, help="guided share of steps (default: the spec's)")
    ap.add_argument("--layers", default="all", help="guided layers: level, down, all")
    ap.add_argument("--chunk", type=int, default=1024, help="query chunk of the guidance")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    if a.fraction is None:
        from lib_initedit.spec import InitEditSpec
        a.fraction = InitEditSpec().guidance_steps
    width = a.width or (32 if a.quick else 320)
    context_dim = a.context_dim or (32 if a.quick else 768)
    repeats = a.repeats or (2 if a.quick else 3)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    unet = UNetModel(model_channels=width, context_dim=context_dim).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, a.latent, a.latent, generator=g).repeat(2, 1, 1, 1)
    cond = torch.randn(1, 77, context_dim, generator=g)
    uncond = torch.randn(1, 77, context_dim, generator=g)
    ctx = torch.cat([uncond, cond])
    t = torch.full((2,), 981)
    layers = select_guided_layers(unet, a.layers)
    boxes = [[(0.05, 0.1, 0.45, 0.6), (0.5, 0.3, 0.95, 0.9)]]
    columns = [[[2, 3], [6, 7]]]
    guide = LayoutGuidance(unet, layers, a.strength, a.fraction, columns, boxes, query_chunk=a.chunk)

    def call():
        with torch.no_grad():
            return unet(x, t, context=ctx)

    def plain():
        return call()

    def inactive():
        with SamplingHooks([guide]).running() as hooks:
            hooks.before_call(99, 100, [cond[0]])
            return call()

    def guided():
        with SamplingHooks([guide]).running() as hooks:
            hooks.before_call(0, 100, [cond[0]])
            return call()

    variants = {"plain": plain, "inactive": inactive, "guided": guided}
    ref, off, on = plain(), inactive(), guided()  # warm-up and checks
    assert torch.equal(ref, off), "inactive guidance changed the output"
    assert not torch.equal(ref[1], on[1]) and torch.equal(ref[0], on[0]), "guidance should change the cond row only"
    times = {name: [] for name in variants}
    wall = {name: [] for name in variants}
    names = list(variants)
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            c0, w0 = time.process_time(), time.perf_counter()
            variants[name]()
            times[name].append(time.process_time() - c0)
            wall[name].append(time.perf_counter() - w0)
        print(f"repeat {r}: " + ", ".join(f"{n} {times[n][-1]:.2f}s" for n in names), flush=True)
    ratio = {name: statistics.median(a_ / b_ for a_, b_ in zip(times[name], times["plain"])) for name in names}
    f = a.fraction
    generation = 1 + f * (ratio["guided"] - 1) + (1 - f) * (ratio["inactive"] - 1)
    res = dict(config=dict(width=width, context_dim=context_dim, latent=a.latent, unet_batch=2, layers=a.layers,
                           guided_layers=len(layers), strength=a.strength, fraction=f, chunk=a.chunk,
                           repeats=repeats, threads=a.threads,
                           parameters=sum(p.numel() for p in unet.parameters()), torch=torch.__version__,
                           machine=platform.machine()),
               cpu_s={n: times[n] for n in names}, wall_s={n: wall[n] for n in names},
               ratio_per_call=ratio, generation_ratio=generation)
    if not a.no_memory:
        peaks = {name: peak_bytes(fn) for name, fn in variants.items()}
        res["peak_bytes"] = peaks
        res["peak_ratio"] = {n: peaks[n] / peaks["plain"] for n in names}
    print(json.dumps({k: v for k, v in res.items() if k not in ("cpu_s", "wall_s")}, indent=1))
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(res, fh, indent=1)
    return res


if __name__ == "__main__":
    main()
