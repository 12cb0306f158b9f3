#!/usr/bin/env python3
"""InitEdit's cost inside a running WebUI, as ratios measured side by side (interleaved) in one run.

    python benchmarks/bench_webui.py --url http://127.0.0.1:7861 [--size 256] [--steps 20] [--repeats 5]

Requests: plain, reroll (one box), layout (two phrases, 1 round), layout (3 rounds); the order is
rotated every repeat and the medians are compared, and each repeat's time with that repeat's plain one
(``paired_ratio``: the median of those ratios, which a slow drift of the machine does not move).
``--cases`` runs only some of them. Also reports the server's RSS before and after
(a leak check, not a peak). Writes JSON with --out.

On a shared machine wall time is meaningless (other processes take the cores); with ``--pid`` (the
server's process id, local servers only) the server's own CPU time per request is measured instead.
Start that server with OMP_NUM_THREADS=1, or spinning OpenMP threads inflate CPU time under load.
"""
import os
import argparse
import json
import statistics
import time
import urllib.request

BOX = [{"box": [0.25, 0.25, 0.75, 0.75], "seed": 7, "strength": 1.0, "feather": 0.05}]
BOXES = [{"phrase": "cat", "box": [0, 0, 0.5, 1]}, {"phrase": "red car", "box": [0.5, 0, 1, 1]}]
NO_RECORDING = {"override_settings": {"initedit_keep_cache_mb": 0}}
CASES = {  # name -> (spec, extra request fields); "plain" is the reference
    "plain": (None, {}),
    "plain, no recording": (None, NO_RECORDING),
    "reroll keep 0": ({"reroll": BOX, "keep": 0.0}, {}),
    "reroll keep 1 (hit)": ({"reroll": BOX, "keep": 1.0}, {"prime": True}),  # its plain (untimed) right before
    "reroll keep 1 (miss)": ({"reroll": BOX, "keep": 1.0}, {"seed": None}),  # a seed never generated before
    "layout, no guidance": ({"layout": BOXES, "guidance": 0.0}, {}),
    "layout, default": ({"layout": BOXES}, {}),
    "layout, every layer": ({"layout": BOXES, "guidance_layers": "all"}, {}),
    "layout, 3 rounds": ({"layout": BOXES, "rounds": 3}, {}),
}
_fresh_seed = iter(range(10_000, 10**9))


def call(url, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=1200) as resp:
        return json.loads(resp.read())


def cpu_seconds(pid):
    """utime + stime of a process and its threads, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(url, case, a):
    spec, extra = case
    extra = dict(extra)
    if extra.pop("prime", False):  # generate the base first, untimed ("plain, no recording" empties the cache)
        run(url, (None, {}), a)
    body = {"prompt": "a cat and a red car", "sampler_name": a.sampler, "width": a.size, "height": a.size,
            "steps": a.steps, "seed": 1, "cfg_scale": 7, "send_images": False, "save_images": False, **extra}
    if body["seed"] is None:
        body["seed"] = next(_fresh_seed)
    if spec:
        body["alwayson_scripts"] = {"InitEdit": {"args": [spec]}}
    clock = (lambda: cpu_seconds(a.pid)) if a.pid else time.perf_counter
    t = clock()
    call(url, "/sdapi/v1/txt2img", body)
    return clock() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:7861")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--sampler", default="Euler")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--pid", type=int, help="measure this server process's CPU time instead of wall time")
    ap.add_argument("--cases", default=None, help="the cases to run, separated by \";\" (plain always runs)")
    ap.add_argument("--out")
    a = ap.parse_args()
    cases = CASES if a.cases is None else {k: v for k, v in CASES.items()
                                           if k == "plain" or k in {c.strip() for c in a.cases.split(";")}}
    rss_before = call(a.url, "/sdapi/v1/memory").get("ram", {}).get("used")
    for name, spec in cases.items():  # warm-up
        run(a.url, spec, a)
    times = {name: [] for name in cases}
    names = list(cases)
    for r in range(a.repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(run(a.url, cases[name], a))
    rss_after = call(a.url, "/sdapi/v1/memory").get("ram", {}).get("used")
    base = statistics.median(times["plain"])
    result = {"size": a.size, "steps": a.steps, "sampler": a.sampler, "repeats": a.repeats,
              "median_s": {k: statistics.median(v) for k, v in times.items()},
              "ratio_to_plain": {k: statistics.median(v) / base for k, v in times.items()},
              "min_s": {k: min(v) for k, v in times.items()},
              "min_ratio_to_plain": {k: min(v) / min(times["plain"]) for k, v in times.items()},
              # each repeat's time over the same repeat's plain one, then the median: drift cancels
              "paired_ratio": {k: statistics.median(t / p for t, p in zip(v, times["plain"])) for k, v in times.items()},
              "samples_s": times,
              "server_ram_used_before": rss_before, "server_ram_used_after": rss_after}
    clock = f"server CPU s (pid {a.pid})" if a.pid else "wall s"
    result["clock"] = clock
    print(f"{a.size}x{a.size}, {a.steps} steps, {a.sampler}, {a.repeats} interleaved repeats (median), {clock}")
    print(f"{'case':<22} {'median':>8} {'ratio':>7} {'min':>8} {'ratio':>7} {'paired':>7}")
    for k in cases:
        print(f"{k:<22} {result['median_s'][k]:8.3f} {result['ratio_to_plain'][k]:7.3f} "
              f"{result['min_s'][k]:8.3f} {result['min_ratio_to_plain'][k]:7.3f} {result['paired_ratio'][k]:7.3f}")
    if rss_before and rss_after:
        print(f"server RAM used: {rss_before / 2**20:.0f} MiB before, {rss_after / 2**20:.0f} MiB after")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
