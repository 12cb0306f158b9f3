#!/usr/bin/env python3
"""Benchmark of the attention probe: time and peak memory of a probe with capture vs. a plain forward, with and
without early stop, on the ldm-style test UNet at SD1.5-like proportions.

A script, not a test. Run from the repository root:

    python benchmarks/bench_probe.py --out bench.json        # SD1.5 width (320 / 768), 64x64 latent
    python benchmarks/bench_probe.py --quick                 # < 60 s, width 32, same 64x64 / 77 tokens

Variants, run interleaved (order rotated every repeat) in one process, batch 1, fp32, torch.no_grad:

    a  plain full forward
    b  capture_cross_attention on the "paper" layer (input_blocks.8.1 ...attn2), no early stop
    c  the same with early stop (what probe.probe_maps does)
    d  capture on every level-2 down-path attn2 ("level": input_blocks.7.1 and 8.1), no early stop

Times are process CPU time with one torch thread by default (--threads, --clock): on a shared CPU,
wall time of spinning OpenMP threads is mostly other people's load; full forwards also record wall time.
Hooked-layer overhead is measured two ways: in situ (timers around the hooked attn2 modules and their
SpatialTransformer: the pre-hook runs before the capture's pre-hook, the forward hook is re-registered
after the capture's hooks, so the time covers the capture) and in isolation (the paper attn2's forward vs.
the capture's work on the same inputs: attention.probabilities_from_qk on the forward's own q / k, as the
library does, and attention.attention_probabilities, its recomputing fallback; interleaved, many repeats). Peak memory: the peak of
the live bytes of the c10 CPU allocator during one call, from torch.profiler(profile_memory=True)
allocation/free events (see docs/benchmark-probe.md). FLOPs of a and c by torch.utils.flop_counter.
"""
from __future__ import annotations

import argparse
import bisect
import gc
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

from lib_initedit.layout import attention  # noqa: E402
from tests.ldm_like import UNetModel  # noqa: E402

VARIANTS = {
    "a": "plain full forward",
    "b": "capture paper layer, no early stop",
    "c": "capture paper layer, early stop (probe_maps)",
    "d": "capture all level-2 down layers, no early stop",
}


# ---------------------------------------------------------------------------------------------------

CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
clock = time.process_time  # set from --clock in main()


class Timers:
    """Timers (and, for the memory pass, profiler ranges named ``hooked:<module>``) around modules.

    The pre-hooks are registered once, before any capture hook, so they run first; the post-hooks are
    re-registered by ``arm()`` inside each variant's capture context, after the capture's own hooks, so a
    module's time covers the capture's pre-hooks, the forward and the capture's forward hooks.
    When a capture stops the forward early, ``close()`` ends the open ranges at the call's end."""

    def __init__(self, modules: dict):
        self.modules = modules
        self.acc = {name: 0.0 for name in modules}
        self.start: dict = {}
        self.ranges: dict = {}
        self.annotate = False
        self.handles = [module.register_forward_pre_hook(self._pre(name)) for name, module in modules.items()]
        self.post_handles: list = []

    def arm(self):
        for handle in self.post_handles:
            handle.remove()
        self.post_handles = [module.register_forward_hook(self._post(name)) for name, module in self.modules.items()]

    def _pre(self, name):
        def hook(module, args):
            if self.annotate:
                self.ranges[name] = torch.autograd.profiler.record_function("hooked:" + name)
                self.ranges[name].__enter__()
            self.start[name] = clock()
        return hook

    def _post(self, name):
        def hook(module, args, output):
            self.acc[name] += clock() - self.start.pop(name)
            if name in self.ranges:
                self.ranges.pop(name).__exit__(None, None, None)
        return hook

    def close(self):
        for name in list(self.ranges):
            self.ranges.pop(name).__exit__(None, None, None)
        self.start.clear()

    def take(self):
        out = dict(self.acc)
        self.acc = {name: 0.0 for name in self.acc}
        self.start.clear()
        return out

    def remove(self):
        for handle in self.handles + self.post_handles:
            handle.remove()


def make_runner(unet, noise, t, ctx, paper, level, columns, timers):
    def plain():
        timers.arm()
        try:
            unet(noise, t, context=ctx)
        finally:
            timers.close()
        return None

    def cap(layers, stop):
        def run():
            try:
                with attention.capture_cross_attention(unet, layers, columns, stop_early=stop) as record:
                    timers.arm()
                    unet(noise, t, context=ctx)
            finally:
                timers.close()
            missing = [layer.name for layer in layers if layer.name not in record.maps]
            assert not missing, missing
            return record
        return run

    return {"a": plain, "b": cap(paper, False), "c": cap(paper, True), "d": cap(level, False)}


def peak_live_bytes(fn, timers):
    """From torch.profiler(profile_memory=True) allocation (+) / free (-) events of the c10 CPU allocator,
    in time order: the peak of live bytes above the level at the call's start, the net bytes live at the
    end once the result (output / record) is dropped (0: nothing leaked, hooks gone), and, per hooked module, the peak inside its range above the level at its
    start (the module's own transient memory, capture included)."""
    from torch.profiler import ProfilerActivity, profile
    gc.collect()
    timers.annotate = True
    try:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            result = fn()
            del result
    finally:
        timers.annotate = False
        timers.take()
    events = prof.profiler.kineto_results.events()
    mem = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
    stamps = [ns for ns, _ in mem]
    live = list(itertools.accumulate(nbytes for _, nbytes in mem)) or [0]
    local = {}
    for e in events:
        if e.name().startswith("hooked:"):
            lo = bisect.bisect_left(stamps, e.start_ns())
            hi = bisect.bisect_right(stamps, e.end_ns())
            before = live[lo - 1] if lo > 0 else 0
            local[e.name()[len("hooked:"):]] = max([0] + [x - before for x in live[lo:hi]])
    return max(0, max(live)), live[-1], local


def median(values):
    return statistics.median(values) if values else float("nan")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="width 32, 2 repeats, memory of a/b/c only, no FLOP count: under 60 s")
    p.add_argument("--width", type=int, default=None, help="model_channels (SD1.5: 320)")
    p.add_argument("--context-dim", type=int, default=None, help="default: width * 2.4 (SD1.5: 768)")
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--latent", type=int, default=64)
    p.add_argument("--tokens", type=int, default=77)
    p.add_argument("--columns", default="2,5,6", help="token positions captured")
    p.add_argument("--repeats", type=int, default=None, help="interleaved rounds of all variants")
    p.add_argument("--micro", type=int, default=None, help="repeats of the isolated layer benchmark")
    p.add_argument("--variants", default="abcd")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP count of a and c (default off in --quick)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (default 1: on a shared CPU, spinning OpenMP threads make wall times "
                        "meaningless); 0 leaves torch's default")
    p.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                   help="clock of the reported times: process CPU time (default; robust to other load with 1 thread) "
                        "or wall; full forwards record both")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    width = args.width or (32 if args.quick else 320)
    context_dim = args.context_dim or int(round(width * 2.4))
    repeats = args.repeats or (2 if args.quick else 5)
    micro = args.micro or (8 if args.quick else 30)
    if args.threads:
        torch.set_num_threads(args.threads)
    global clock
    clock = CLOCKS[args.clock]
    columns = [int(c) for c in args.columns.split(",") if c.strip()]
    variants = [v for v in args.variants if v in VARIANTS]
    if "a" not in variants:
        variants.insert(0, "a")

    t_begin = time.perf_counter()
    torch.manual_seed(args.seed)
    unet = UNetModel(model_channels=width, context_dim=context_dim, heads=args.heads).eval()
    g = torch.Generator().manual_seed(args.seed + 1)
    noise = torch.randn(1, 4, args.latent, args.latent, generator=g)
    ctx = torch.randn(1, args.tokens, context_dim, generator=g)
    t = torch.full((1,), 981)
    found = attention.find_cross_attention(unet)
    paper = attention.select_layers(found, "paper")
    level = attention.select_layers(found, "level")
    modules = dict(unet.named_modules())
    timed = {layer.name: layer.module for layer in level}
    timed.update({layer.parent: modules[layer.parent] for layer in level})
    params = sum(p_.numel() * p_.element_size() for p_ in unet.parameters())
    config = {"model_channels": width, "channel_mult": [1, 2, 4, 4], "attention_levels": [0, 1, 2],
              "num_res_blocks": 2, "heads": args.heads, "context_dim": context_dim, "tokens": args.tokens,
              "latent": [1, 4, args.latent, args.latent], "dtype": "float32", "columns": columns,
              "params_M": round(sum(p_.numel() for p_ in unet.parameters()) / 1e6, 2),
              "paper_layers": [l.name for l in paper], "level_layers": [l.name for l in level],
              "repeats": repeats, "micro_repeats": micro, "threads": torch.get_num_threads(),
              "torch": torch.__version__, "machine": platform.platform(), "cpu_count": os.cpu_count()}
    print(f"model_channels={width} context_dim={context_dim} heads={args.heads} latent 1x4x{args.latent}x{args.latent} "
          f"tokens={args.tokens} params={config['params_M']}M threads={config['threads']}", flush=True)
    print(f"paper: {config['paper_layers']}  level: {config['level_layers']}", flush=True)

    timers = Timers(timed)
    runs = make_runner(unet, noise, t, ctx, paper, level, columns, timers)
    times = {v: [] for v in variants}
    other_clock = "wall" if args.clock == "cpu" else "cpu"
    times_other = {v: [] for v in variants}
    layer_times = {v: [] for v in variants}
    with torch.no_grad():
        # correctness: the early stop gives the same maps as the full forward
        rec_b, rec_c = runs["b"](), runs["c"]()
        early_diff = max(float((rec_b.maps[n] - rec_c.maps[n]).abs().max()) for n in rec_b.maps)
        assert rec_c.stopped_early
        del rec_b, rec_c
        for v in variants:  # warm-up (b, c ran above)
            if v not in "bc":
                runs[v]()
        timers.take()
        for r in range(repeats):
            order = variants[r % len(variants):] + variants[:r % len(variants)]
            for v in order:
                start, start_other = clock(), CLOCKS[other_clock]()
                runs[v]()
                times[v].append(clock() - start)
                times_other[v].append(CLOCKS[other_clock]() - start_other)
                layer_times[v].append(timers.take())
            print(f"  round {r + 1}/{repeats} ({args.clock}): " + "  ".join(f"{v}={times[v][-1]:.3f}s" for v in variants),
                  flush=True)
        memory = {}
        if not args.no_memory:
            for v in [v for v in variants if not args.quick or v in "abc"]:  # quick: a, b, c only
                memory[v] = peak_live_bytes(runs[v], timers)
                print(f"  memory {v}: peak {memory[v][0] / 2**20:.2f} MiB; in hooked modules: "
                      + ", ".join(f"{n.split('.')[1]}.{n.rsplit('.', 1)[-1]} {b / 2**20:.2f}" for n, b in memory[v][2].items()),
                      flush=True)
        flops = {}
        if not (args.no_flops or args.quick):
            from torch.utils.flop_counter import FlopCounterMode
            for v in ("a", "c"):
                with FlopCounterMode(display=False) as fc:
                    runs[v]()
                flops[v] = fc.get_total_flops()
            print(f"  FLOPs: a {flops['a'] / 1e9:.1f} G, c {flops['c'] / 1e9:.1f} G", flush=True)
        timers.remove()

        # isolated: the paper attn2's forward vs. the capture computation on the same inputs
        inputs = {}
        mod = paper[-1].module

        def grab(module, a, kw):
            inputs.setdefault("x", attention._first_tensor(a, kw, "x"))
            inputs.setdefault("context", kw.get("context", a[1] if len(a) > 1 else None))
        h = mod.register_forward_pre_hook(grab, with_kwargs=True)
        with attention.capture_cross_attention(unet, paper, columns, stop_early=True):
            unet(noise, t, context=ctx)
        h.remove()
        x_in, c_in = inputs["x"], inputs["context"]
        q_in, k_in = mod.to_q(x_in), mod.to_k(c_in)
        micro_fns = {
            "attn2_forward": lambda: mod(x_in, context=c_in),
            "capture_from_qk": lambda: attention.probabilities_from_qk(q_in, k_in, int(mod.heads),
                                                                       attention.attention_scale(mod), columns),
            "capture_recompute": lambda: attention.attention_probabilities(mod, x_in, c_in, columns),
            "to_q": lambda: mod.to_q(x_in),
        }
        parent = modules[paper[-1].parent]
        parent_in = {}
        def grab_parent(module, a, kw):
            parent_in.setdefault("x", a[0])
        hp = parent.register_forward_pre_hook(grab_parent, with_kwargs=True)
        with attention.capture_cross_attention(unet, paper, columns, stop_early=True):
            unet(noise, t, context=ctx)
        hp.remove()
        micro_fns["spatial_transformer"] = lambda: parent(parent_in["x"], ctx)
        micro_t = {k: [] for k in micro_fns}
        for fn in micro_fns.values():
            fn()
        for r in range(micro):
            for name in list(micro_fns)[r % len(micro_fns):] + list(micro_fns)[:r % len(micro_fns)]:
                start = clock()
                micro_fns[name]()
                micro_t[name].append(clock() - start)

    # ---- report
    med = {v: median(times[v]) for v in variants}
    paired = {v: median([x / y for x, y in zip(times[v], times["a"])]) for v in variants}
    med_other = {v: median(times_other[v]) for v in variants}
    paired_other = {v: median([x / y for x, y in zip(times_other[v], times_other["a"])]) for v in variants}
    attn_names = [l.name for l in level]
    paper_attn = paper[-1].name
    paper_parent = paper[-1].parent

    def layer_med(v, names):
        return median([sum(lt[n] for n in names) for lt in layer_times[v]])

    insitu = {}
    for v, names in (("b", [paper_attn]), ("d", attn_names)):
        if v in variants:
            base = layer_med("a", names)
            insitu[v] = {"layers": names, "plain_s": base, "with_capture_s": layer_med(v, names),
                         "overhead": layer_med(v, names) / base - 1,
                         "overhead_paired": median([sum(lt[n] for n in names) / sum(la[n] for n in names) - 1
                                                    for lt, la in zip(layer_times[v], layer_times["a"])])}
    parents = sorted({l.parent for l in level})
    insitu_parent = {}
    for v, names in (("b", [paper_parent]), ("d", parents)):
        if v in variants:
            base = layer_med("a", names)
            insitu_parent[v] = {"layers": names, "plain_s": base, "with_capture_s": layer_med(v, names),
                                "overhead": layer_med(v, names) / base - 1}
    mt = {k: median(v_) for k, v_ in micro_t.items()}
    isolated = {"median_s": mt,
                "from_qk_over_attn2": mt["capture_from_qk"] / mt["attn2_forward"],
                "recompute_over_attn2": mt["capture_recompute"] / mt["attn2_forward"],
                "from_qk_over_spatial_transformer": mt["capture_from_qk"] / mt["spatial_transformer"],
                "recompute_over_spatial_transformer": mt["capture_recompute"] / mt["spatial_transformer"],
                "to_q_share_of_recompute": mt["to_q"] / mt["capture_recompute"]}
    mem_out = {}
    if memory:
        base_peak = memory["a"][0]
        for v in memory:
            mem_out[v] = {"peak_bytes": memory[v][0], "net_bytes_after": memory[v][1], "in_module_peak_bytes": memory[v][2],
                          "extra_over_plain_activation_peak": memory[v][0] / base_peak - 1,
                          "extra_over_params_plus_peak": (memory[v][0] - base_peak) / (base_peak + params)}
    transient = None
    if memory and "c" in memory and paper_attn in memory["c"][2]:
        # in c the probe stops right after the paper attn2 (the capture's forward hook): its range holds that
        # forward and the capture, a bound on the capture's transient memory
        transient = {"bytes": memory["c"][2][paper_attn], "over_plain_peak": memory["c"][2][paper_attn] / memory["a"][0]}
    config["clock"] = args.clock
    result = {"config": config, "variants": VARIANTS, "clock": args.clock, "times_s": times, "median_s": med,
              "ratio_of_medians": {v: med[v] / med["a"] for v in variants}, "ratio_paired_median": paired,
              other_clock: {"times_s": times_other, "median_s": med_other, "ratio_paired_median": paired_other},
              "flops": flops, "flops_ratio_c_over_a": flops["c"] / flops["a"] if flops else None,
              "capture_transient_paper_layer": transient,
              "hooked_attn2_in_situ": insitu, "hooked_spatial_transformer_in_situ": insitu_parent,
              "isolated_paper_attn2": isolated, "memory": mem_out, "params_bytes": params,
              "early_stop_max_abs_diff": early_diff,
              "wall_s": time.perf_counter() - t_begin}

    print()
    print(f"times: {args.clock} clock (ratio = of medians, paired = median of per-round ratios; "
          f"{other_clock} paired ratio alongside)")
    print(f"{'':<4} {'what':<62} {'median s':>9} {'ratio':>7} {'paired':>7} {other_clock + ' p.':>7} {'peak MiB':>9} {'extra':>7}")
    for v in variants:
        m = mem_out.get(v)
        mem_s = f"{m['peak_bytes'] / 2**20:9.1f} {m['extra_over_plain_activation_peak']:+7.1%}" if m else f"{'-':>9} {'-':>7}"
        print(f"{v:<4} {VARIANTS[v]:<62} {med[v]:9.3f} {med[v] / med['a']:7.3f} {paired[v]:7.3f} {paired_other[v]:7.3f} {mem_s}")
    print()
    print("hooked-layer overhead, in situ (median over rounds of the summed hook-timed module time):")
    for v, row in insitu.items():
        prow = insitu_parent[v]
        print(f"  {v}: attn2 {row['plain_s'] * 1e3:8.2f} -> {row['with_capture_s'] * 1e3:8.2f} ms  {row['overhead']:+7.1%}"
              f" (paired {row['overhead_paired']:+.1%});  SpatialTransformer {prow['plain_s'] * 1e3:8.2f} -> "
              f"{prow['with_capture_s'] * 1e3:8.2f} ms  {prow['overhead']:+7.1%}")
    print("isolated, paper attn2 inputs (medians of %d interleaved repeats):" % micro)
    print(f"  attn2 forward {mt['attn2_forward'] * 1e3:.2f} ms, SpatialTransformer {mt['spatial_transformer'] * 1e3:.2f} ms, "
          f"to_q {mt['to_q'] * 1e3:.2f} ms")
    print(f"  capture (forward's q/k) {mt['capture_from_qk'] * 1e3:.2f} ms = {isolated['from_qk_over_attn2']:.1%} of attn2 "
          f"({isolated['from_qk_over_spatial_transformer']:.1%} of its SpatialTransformer)")
    print(f"  fallback (recompute)    {mt['capture_recompute'] * 1e3:.2f} ms = {isolated['recompute_over_attn2']:.1%} of attn2 "
          f"({isolated['recompute_over_spatial_transformer']:.1%} of its SpatialTransformer)")
    print(f"early-stop vs full maps: max |diff| {early_diff:.2e}")
    if transient:
        print(f"capture's transient memory on the paper layer, at most (variant c: the attn2 forward and the capture): "
              f"{transient['bytes'] / 2**20:.2f} MiB = {transient['over_plain_peak']:.2%} of the plain forward's peak "
              f"(an upper bound on the extra peak even if it ran at the peak)")
    if flops:
        print(f"FLOPs (torch.utils.flop_counter): a {flops['a'] / 1e9:.1f} G, c {flops['c'] / 1e9:.1f} G, "
              f"c/a {flops['c'] / flops['a']:.3f}")
    print(f"params {params / 2**20:.1f} MiB; wall {result['wall_s']:.1f} s")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
