"""How the toy model's cross-attention is shaped: per query, the range of its scores (max - min over the 77
tokens), its largest probability and the start token's share, over every attn2 call of a few generations.

    python -m lib_initedit.toy.attention_stats                      # the bundled weights
    python -m lib_initedit.toy.attention_stats --weights other.safetensors

Medians (and 10th / 90th percentiles) over heads, queries, layers, steps and images, conditional rows only.
In Stable Diffusion the start token takes most of each query's attention; a near-uniform attention has a
largest probability near 1/77.
"""
from __future__ import annotations

import argparse
import json

import torch

from .boxes import layout_cases
from .model import load
from .pipe import ToyPipe, seed_noise


@torch.no_grad()
def attention_stats(pipe: ToyPipe, n: int = 8) -> dict:
    cases = layout_cases("2", n)
    caps = [c["caption"] for c in cases]
    noise = torch.stack([seed_noise(c["noise_seed"]) for c in cases])
    found: dict[str, list] = {"range": [], "top": [], "start": []}

    def hook(module, args, kwargs, out):
        x, ctx = args[0][n:], kwargs["context"][n:]  # the conditional rows (the batch is [uncond, cond])
        b, q_len, _ = x.shape
        q = module.to_q(x).reshape(b, q_len, module.heads, -1).transpose(1, 2)
        k = module.to_k(ctx).reshape(b, ctx.shape[1], module.heads, -1).transpose(1, 2)
        s = q @ k.transpose(-1, -2) * module.scale
        p = s.softmax(dim=-1)
        found["range"].append((s.amax(-1) - s.amin(-1)).flatten())
        found["top"].append(p.amax(-1).flatten())
        found["start"].append(p[..., 0].flatten())

    handles = [m.register_forward_hook(hook, with_kwargs=True) for name, m in pipe.unet.named_modules()
               if name.endswith("attn2")]
    try:
        pipe.generate(noise, caps)
    finally:
        for h in handles:
            h.remove()
    out = {}
    for key, parts in found.items():
        v = torch.cat(parts).float()
        qs = torch.quantile(v[torch.randperm(v.numel(), generator=torch.Generator().manual_seed(0))[:200_000]],
                            torch.tensor([0.1, 0.5, 0.9]))
        out[key] = dict(p10=float(qs[0]), median=float(qs[1]), p90=float(qs[2]))
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", default=None)
    ap.add_argument("--n", type=int, default=8, help="images (20-step DDIM, CFG 5)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    res = attention_stats(ToyPipe(load(a.weights)), a.n)
    print(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
