"""What InitEdit costs in ComfyUI, as ratios to a plain KSampler prompt, measured side by side (interleaved) on a
running lab: ``python3 tests/tooling/comfy_bench.py [URL] [--repeats N] [--size PX] [--steps N] [--json FILE]``.

Each prompt's time is the server's own (execution_start -> execution_success timestamps in /history); every
prompt gets a new seed so ComfyUI's cache never answers; medians per request kind."""
import json
import pathlib
import statistics
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "comfy"))

import workflows as wf  # noqa: E402
from comfy_client import Comfy  # noqa: E402

LAYOUT = {"layout": [{"phrase": "cat", "box": [0.0, 0.25, 0.5, 0.75]}, {"phrase": "red car", "box": [0.5, 0.25, 1, 0.75]}]}
BOX = [{"box": [0.25, 0.25, 0.75, 0.75], "seed": 7, "strength": 1.0, "feather": 0.05}]


def kinds(size, steps):
    def base(seed):
        return wf.base(seed=seed, size=size, steps=steps)
    return {
        "plain": base,
        "reroll, keep 0": lambda s: wf.with_reroll(base(s), {"reroll": BOX, "keep": 0.0}),
        "reroll, keep 0.8": lambda s: wf.with_reroll(base(s), {"reroll": BOX, "keep": 0.8}),
        "layout, guidance 0": lambda s: wf.with_layout(base(s), {**LAYOUT, "guidance": 0}),
        "layout, default guidance": lambda s: wf.with_layout(base(s), LAYOUT),
    }


def seconds(comfy, graph):
    comfy.run(graph)
    history = comfy.get_json("/history?max_items=1")
    (entry,) = history.values()
    stamps = {m[0]: m[1]["timestamp"] for m in entry["status"]["messages"]}
    return (stamps["execution_success"] - stamps["execution_start"]) / 1000.0


def main():
    args = sys.argv[1:]
    url = next((a for a in args if a.startswith("http")), "http://127.0.0.1:8188")
    opt = {k: args[args.index(k) + 1] for k in ("--repeats", "--size", "--steps", "--json") if k in args}
    repeats, size, steps = int(opt.get("--repeats", 5)), int(opt.get("--size", 256)), int(opt.get("--steps", 20))
    comfy = Comfy(url)
    table = kinds(size, steps)
    comfy.run(table["plain"](1))  # load the models once
    times = {name: [] for name in table}
    seed = 1000
    for _ in range(repeats):
        for name, build in table.items():
            seed += 1
            times[name].append(seconds(comfy, build(seed)))
    plain = statistics.median(times["plain"])
    result = {"size": size, "steps": steps, "repeats": repeats, "plain_seconds": plain,
              "ratio": {name: statistics.median(t) / plain for name, t in times.items()}, "seconds": times}
    for name, ratio in result["ratio"].items():
        print(f"{name:32s} {ratio:6.3f}")
    if "--json" in opt:
        pathlib.Path(opt["--json"]).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
