"""Train the toy model. Deterministic (fixed seeds, scenes drawn by step), CPU-friendly.

    python -m lib_initedit.toy.train --out lib_initedit/toy/weights/toy.safetensors --steps N

The learning rate is constant after a short warm-up (no dependence on the total), so a run stopped
early by SIGTERM/Ctrl-C at step N saves exactly what ``--steps N`` would have produced.
"""
from __future__ import annotations

import argparse
import copy
import signal
import time

import torch

from . import data
from .model import ToyModel
from .schedule import T, q_sample


def save(model: torch.nn.Module, path: str, meta: dict) -> None:
    from safetensors.torch import save_file

    sd = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    save_file(sd, path, metadata={k: str(v) for k, v in meta.items()})


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="lib_initedit/toy/weights/toy.safetensors")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--ema", type=float, default=0.995)
    ap.add_argument("--p-uncond", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=1, help="1 is fastest on a shared CPU")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--snapshot-every", type=int, default=250)
    a = ap.parse_args(argv)

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = ToyModel()
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.0)
    warm = 100
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    gen = torch.Generator().manual_seed(a.seed + 1)
    t0, run = time.time(), 0.0
    done = 0
    for step in range(a.steps):
        if stop:
            break
        seeds = range(1_000_000 + step * a.batch, 1_000_000 + (step + 1) * a.batch)
        x0, caps = data.batch(seeds)
        drop = torch.rand(a.batch, generator=gen) < a.p_uncond
        caps = ["" if d else c for c, d in zip(caps, drop.tolist())]
        t = torch.randint(0, T, (a.batch,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        pred = model.unet(q_sample(x0, t, eps), t, context=model.encode(caps))
        loss = (pred - eps).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        d = min(a.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - d)
        done = step + 1
        run = loss.item() if step == 0 else 0.98 * run + 0.02 * loss.item()
        if step % 50 == 0 or step == a.steps - 1:
            print(f"step {step} loss {run:.4f} lr {sched.get_last_lr()[0]:.2e} {time.time() - t0:.0f}s", flush=True)
        if a.snapshot_every and step and step % a.snapshot_every == 0:
            save(ema, a.out + ".partial", {"step": step})
    meta = {"steps": done, "batch": a.batch, "lr": a.lr, "ema": a.ema, "seed": a.seed,
            "wall_s": round(time.time() - t0), "command": f"python -m lib_initedit.toy.train --out {a.out} --steps {done} --batch {a.batch}"}
    save(ema, a.out, meta)
    print(f"done in {time.time() - t0:.0f}s -> {a.out}", flush=True)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
