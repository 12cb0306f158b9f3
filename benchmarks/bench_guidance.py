#!/usr/bin/env python3
"""Cost and effect of layout guidance (``lib_initedit.layout.guidance``) on the ldm-style test UNets.

A script, not a test. Run from the repository root:

    python benchmarks/bench_guidance.py --out docs/bench-guidance.json     # SD1.5 width (320 / 768), 64x64 latent
    python benchmarks/bench_guidance.py --quick                            # width 32: a smoke run
    python benchmarks/bench_guidance.py --effect --out docs/bench-guidance-effect.json   # the effect table
    ~/webui-lab/venv/bin/python benchmarks/bench_guidance.py --effect --lab ~/webui-lab \
        --out docs/bench-guidance-effect-lab.json           # the same on the WebUI lab's tiny checkpoints

Effect (``--effect``): on an SD1.5-layout UNet (320 channels, context 768, attention at the three upper levels)
and an SDXL-layout one (320 / 640 / 1280 channels, attention at the two lower levels, context 2048), a 32x32
latent (the shares do not depend on the size; it keeps the CPU time down),
random weights, one CFG call at t = 981 with two boxes: each box phrase's attention share (mean over heads,
queries and guided layers) on the cells its box pulls it in and outside its box, without and with guidance, for
the shipped default ("share" units) and the "logits" unit (+-8). Three kinds of attention: random
text states (near-uniform, like the toy world before it learned a start token), the same x4 (every score x4),
and an SD-like start token: every attn2 is given a direction that all its queries share (its LayerNorm's bias)
and a start-token key along it, so that the start token takes most of each query's attention, as in Stable
Diffusion. Also the relative change of the UNet's output and, for the SD-like rows, whether the guided call
in fp16 gives anything inf/NaN.

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
import math
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
from lib_initedit.sampling_hooks import Call, SamplingHooks  # noqa: E402
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
    ap.add_argument("--effect", action="store_true", help="the effect table instead of the cost")
    ap.add_argument("--lab", default=None, help="with --effect: the WebUI lab's folder (~/webui-lab); measure its "
                                                "tiny checkpoints (run with the lab's python: it has ldm / sgm)")
    a = ap.parse_args(argv)
    if a.effect:
        return effect(a)
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
            hooks.before_call(Call.plain(99, 100), [cond[0]])
            return call()

    def guided():
        with SamplingHooks([guide]).running() as hooks:
            hooks.before_call(Call.plain(0, 100), [cond[0]])
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


MODELS = {  # name -> UNetModel keyword arguments (ldm layout), latent side
    "SD1.5 layout": (dict(model_channels=320, context_dim=768, heads=8), 32),
    "SDXL layout": (dict(model_channels=320, channel_mult=(1, 2, 4), attention_levels=(1, 2), context_dim=2048,
                         heads=10), 32),
}
QUICK_MODELS = {"SD1.5 layout": (dict(model_channels=32, context_dim=64, heads=4), 32),
                "SDXL layout": (dict(model_channels=32, channel_mult=(1, 2, 4), attention_levels=(1, 2),
                                     context_dim=96, heads=4), 32)}


def effect_models(a):
    """(name, build() -> UNet, context dim, latent side, extra forward kwargs) of the effect table's UNets: the
    ldm-named test UNets at SD1.5 / SDXL width, or with ``--lab`` the WebUI lab's tiny checkpoints, built by the
    WebUI's own ldm / sgm code from their yaml and weights (run with the lab's python)."""
    if a.lab:
        return lab_models(a.lab)
    out = []
    for name, (kw, side) in (QUICK_MODELS if a.quick else MODELS).items():
        def build(kw=kw):
            torch.manual_seed(0)
            return UNetModel(**kw).eval()
        out.append((name, build, kw["context_dim"], side, {}))
    return out


LAB_CHECKPOINTS = {"lab tiny-sd15 (ldm)": "tiny-sd15", "lab tiny-sdxl (sgm)": "tiny-sdxl"}


def lab_models(lab: str):
    """``lab``: the lab's folder (``../shared/webui-lab/setup.sh`` makes ~/webui-lab: the WebUI in
    stable-diffusion-webui/, the tiny checkpoints in models/Stable-diffusion/)."""
    import importlib

    from omegaconf import OmegaConf
    from safetensors.torch import load_file

    webui = os.path.join(lab, "stable-diffusion-webui")
    for repo in ("stable-diffusion-stability-ai", "generative-models"):
        path = os.path.join(webui, "repositories", repo)
        if path not in sys.path:
            sys.path.append(path)
    folder = os.path.join(lab, "models", "Stable-diffusion")
    out = []
    for name, stem in LAB_CHECKPOINTS.items():
        cfg = OmegaConf.load(os.path.join(folder, stem + ".yaml")).model.params
        unet_cfg = cfg.get("unet_config") or cfg.get("network_config")

        def build(unet_cfg=unet_cfg, stem=stem):
            module, cls = unet_cfg.target.rsplit(".", 1)
            params = dict(unet_cfg.params)
            params["use_checkpoint"] = False
            if "spatial_transformer_attn_type" in params:
                params["spatial_transformer_attn_type"] = "softmax"  # plain attention, no xformers on a CPU
            unet = getattr(importlib.import_module(module), cls)(**params)
            prefix = "model.diffusion_model."
            state = load_file(os.path.join(folder, stem + ".safetensors"))
            weights = {k[len(prefix):]: v.float() for k, v in state.items() if k.startswith(prefix)}
            unet.load_state_dict(weights, strict=True)
            return unet.float().eval()

        params = unet_cfg.params
        extra = {"y": torch.zeros(2, int(params.adm_in_channels))} if params.get("adm_in_channels") else {}
        out.append((name, build, int(params.context_dim), 32, extra))
    return out


def effect(a) -> dict:
    """The effect table: phrase shares inside / outside the boxes before and after guidance, output change, fp16."""
    from lib_initedit.spec import DEFAULT_GUIDANCE_LOGITS, InitEditSpec

    torch.set_num_threads(a.threads)
    spec = InitEditSpec()
    settings = {f"share {spec.guidance:g} %": dict(strength=spec.guidance, units="share"),
                f"+-{DEFAULT_GUIDANCE_LOGITS:g} logits": dict(strength=DEFAULT_GUIDANCE_LOGITS, units="logits")}
    boxes = [[(0.05, 0.1, 0.45, 0.6), (0.55, 0.5, 0.9, 0.85)]]
    columns = [[[2, 3], [6, 7]]]
    rows = []
    for model_name, build, d, side, extra in effect_models(a):
        unet = build()
        g = torch.Generator().manual_seed(1)
        x = torch.randn(1, 4, side, side, generator=g).repeat(2, 1, 1, 1)
        base = torch.randn(1, 77, d, generator=g)
        uncond = torch.randn(1, 77, d, generator=g)
        t = torch.full((2,), 981)
        layers = select_guided_layers(unet, "all")
        for cond_name, cond in (("random", base), ("scores x4", base * 4), ("SD-like start token", base)):
            if cond_name == "SD-like start token":
                start_token_sink(unet, layers, base[0, 0], uncond[0, 0])
            ctx = torch.cat([uncond, cond])
            with torch.no_grad():
                plain = unet(x, t, context=ctx, **extra)
            for set_name, st in settings.items():
                guide = LayoutGuidance(unet, layers, st["strength"], 1.0, columns, boxes, units=st["units"],
                                       size_power=1.0, large_core=spec.guidance_core)
                seen = []  # (module, x, context) of the conditional row of every guided attn2 call
                handles = [layer.module.register_forward_hook(
                    lambda m, args, kwargs, out: seen.append((m, args[0][1:].detach(), kwargs["context"][1:])),
                    with_kwargs=True) for layer in layers]
                try:
                    with SamplingHooks([guide]).running() as hooks:
                        hooks.before_call(Call.plain(0, 10), [cond[0]])
                        with torch.no_grad():
                            guided = unet(x, t, context=ctx, **extra)
                finally:
                    for handle in handles:
                        handle.remove()
                acc = {key: [] for key in ("in_before", "in_after", "out_before", "out_after", "start", "top")}
                for module, xi, ci in seen:
                    before, after = guide.phrase_shares(module, xi, ci, 0)
                    n = xi.shape[1]
                    h = w = int(round(n ** 0.5))
                    for k_, box in enumerate(boxes[0]):
                        sign = guide.box_bias.sign(box, h, w)
                        pulled, outside = sign > 0, sign < 0
                        acc["in_before"].append(float(before[k_][pulled].mean()))
                        acc["in_after"].append(float(after[k_][pulled].mean()))
                        acc["out_before"].append(float(before[k_][outside].mean()))
                        acc["out_after"].append(float(after[k_][outside].mean()))
                    probs = attention_probabilities(module, xi, ci)
                    acc["start"].append(float(probs[..., 0].mean()))
                    acc["top"].append(float(probs.max(dim=-1).values.median()))
                change = float((guided[1] - plain[1]).norm() / plain[1].norm())
                # (ldm's own attention cannot run in fp16 on a CPU: the lab's rows leave this to the test UNets)
                half_ok = fp16_finite(unet, x, t, ctx, guide, cond) \
                    if cond_name == "SD-like start token" and not a.lab else None
                row = dict(model=model_name, conditioning=cond_name, guidance=set_name, layers=len(seen),
                           change=change, fp16_finite=half_ok,
                           **{key: statistics.mean(v) for key, v in acc.items()},
                           in_after_min=min(acc["in_after"]))
                rows.append(row)
                print(f"{model_name:13s} {cond_name:20s} {set_name:14s} start token {row['start']:.2f} top prob "
                      f"{row['top']:.2f}  inside {row['in_before']:.3f} -> "
                      f"{row['in_after']:.3f} (min layer {row['in_after_min']:.3f})  outside {row['out_before']:.4f} "
                      f"-> {row['out_after']:.4f}  output change {change:.3f}  fp16 finite {half_ok}", flush=True)
            unet.float()
    res = dict(config=dict(quick=a.quick, boxes=boxes, columns=columns, torch=torch.__version__), rows=rows)
    print(effect_table(rows))
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(res, fh, indent=1)
    return res


def attention_probabilities(module, x, context) -> torch.Tensor:
    """(H, N, T) softmax(q k^T scale) of one row (x (1, N, C), context (1, T, D))."""
    q, k = module.to_q(x).float(), module.to_k(context).float()
    heads = int(module.heads)
    qh = q.reshape(1, q.shape[1], heads, -1).transpose(1, 2)[0]
    kh = k.reshape(1, k.shape[1], heads, -1).transpose(1, 2)[0]
    return (qh @ kh.transpose(-1, -2) * module.scale).softmax(dim=-1)


@torch.no_grad()
def start_token_sink(unet, layers, start, uncond_start, share: float = 0.85) -> None:
    """Give every attn2 an SD-like start token: a direction u shared by all queries (the bias of the LayerNorm
    before it) and a rank-1 change of to_k that maps the start token's text state (and the unconditional one's)
    along W_q u, scaled so that the start token takes about ``share`` of the attention."""
    g = torch.Generator().manual_seed(2)
    for layer in layers:
        module = layer.module
        block = next(b for b in unet.modules() if getattr(b, "attn2", None) is module)
        dim = block.norm2.normalized_shape[0]
        u = torch.randn(dim, generator=g)
        block.norm2.bias.copy_(2 * u / u.norm())
        qu = module.to_q.weight @ block.norm2.bias  # the query part every position shares
        heads = int(module.heads)
        per_head = qu.reshape(heads, -1).norm(dim=1)  # each head's scale: score = alpha |qu_h|^2 scale
        alpha = (math.log(share / (1 - share) * 76) / (per_head ** 2 * module.scale)).mean()
        for c in (start, uncond_start):
            module.to_k.weight += alpha * torch.outer(qu, c) / c.dot(c)


def fp16_finite(unet, x, t, ctx, guide, cond) -> bool:
    """The guided call with the UNet in fp16 (the time embedding's MLP stays fp32, its output cast): all finite?"""
    unet.half()
    unet.time_embed.float()
    handle = unet.time_embed.register_forward_hook(lambda m, args, out: out.half())
    try:
        with SamplingHooks([guide]).running() as hooks:
            hooks.before_call(Call.plain(0, 10), [cond[0].half()])
            with torch.no_grad():
                out = unet(x.half(), t, context=ctx.half())
        return bool(torch.isfinite(out).all())
    finally:
        handle.remove()
        unet.float()


def effect_table(rows) -> str:
    lines = ["| UNet | attention | start token's share, median top probability | guidance | phrase share in its "
             "box: before -> after (lowest layer) | outside: before -> after | output change | fp16 finite |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['conditioning']} | {r['start']:.2f}, {r['top']:.2f} | {r['guidance']} | "
                     f"{r['in_before']:.3f} -> "
                     f"{r['in_after']:.3f} ({r['in_after_min']:.3f}) | {r['out_before']:.4f} -> {r['out_after']:.4f} | "
                     f"{r['change']:.3f} | {'' if r['fp16_finite'] is None else 'yes' if r['fp16_finite'] else 'NO'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
