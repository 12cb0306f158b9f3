"""Train the toy model. Deterministic (fixed seeds, scenes drawn by step), CPU-friendly.

    python -m lib_initedit.toy.train --out lib_initedit/toy/weights/toy.safetensors --steps N
    python -m lib_initedit.toy.train --init old.safetensors --out new.safetensors --steps N   # continue training

The learning rate is constant after a short warm-up (no dependence on the total), so a run stopped
early by SIGTERM/Ctrl-C at step N saves exactly what ``--steps N`` would have produced.

Start token: in Stable Diffusion most of each pixel's cross-attention goes to the prompt's start token
(whose text encoding is the same for every prompt). A small auxiliary loss gives the toy the same habit:
``--sink-weight`` x the mean shortfall of the start token's attention share below ``--sink-share``, over
every cross-attention call of the conditional and unconditional rows.
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


class StartTokenShare:
    """Forward hooks on every attn2 that record each query's attention probability on the start token."""

    def __init__(self, unet: torch.nn.Module):
        self.shares: list[torch.Tensor] = []
        self.handles = [m.register_forward_hook(self._hook, with_kwargs=True)
                        for name, m in unet.named_modules() if name.endswith("attn2")]

    def _hook(self, mod, args, kwargs, out):
        x, ctx = args[0], kwargs.get("context", args[1] if len(args) > 1 else None)
        b, n, _ = x.shape
        q = mod.to_q(x).reshape(b, n, mod.heads, -1).transpose(1, 2)
        k = mod.to_k(ctx).reshape(b, ctx.shape[1], mod.heads, -1).transpose(1, 2)
        sim = torch.einsum("bhid,bhjd->bhij", q, k) * mod.scale
        self.shares.append((sim[..., 0] - sim.logsumexp(-1)).exp())

    def shortfall(self, target: float) -> torch.Tensor:
        out = torch.stack([(target - s).clamp(min=0).mean() for s in self.shares]).mean()
        self.shares.clear()
        return out


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
    ap.add_argument("--sink-share", type=float, default=0.6, help="start token's target attention share")
    ap.add_argument("--sink-weight", type=float, default=0.05, help="0: no start-token loss")
    ap.add_argument("--init", default=None, help="start from these weights (model and EMA) instead of random ones")
    ap.add_argument("--first-step", type=int, default=0, help="scenes from this step on (continued training: "
                                                             "the steps the --init weights were trained for)")
    ap.add_argument("--scenes", default=data.DEFAULT_STYLE, choices=sorted(data.STYLES),
                    help="scene style (data.STYLES): 'touching' the second stage's, 'corners' the third's")
    a = ap.parse_args(argv)

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = ToyModel()
    if a.init:
        from safetensors.torch import load_file

        model.load_state_dict({k: v.float() for k, v in load_file(a.init).items()})
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.0)
    warm = 100
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    gen = torch.Generator().manual_seed(a.seed + 1)
    sink = StartTokenShare(model.unet) if a.sink_weight else None
    t0, run, run_aux = time.time(), 0.0, 0.0
    done = 0
    for step in range(a.steps):
        if stop:
            break
        first = 1_000_000 + (a.first_step + step) * a.batch
        seeds = range(first, first + a.batch)
        x0, caps = data.batch(seeds, a.scenes)
        drop = torch.rand(a.batch, generator=gen) < a.p_uncond
        caps = ["" if d else c for c, d in zip(caps, drop.tolist())]
        t = torch.randint(0, T, (a.batch,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        pred = model.unet(q_sample(x0, t, eps), t, context=model.encode(caps))
        loss = (pred - eps).pow(2).mean()
        if sink is not None:
            aux = sink.shortfall(a.sink_share)
            loss_total = loss + a.sink_weight * aux
        else:
            aux, loss_total = torch.zeros(()), loss
        opt.zero_grad(set_to_none=True)
        loss_total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        d = a.ema if a.init else min(a.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - d)
        done = step + 1
        run = loss.item() if step == 0 else 0.98 * run + 0.02 * loss.item()
        run_aux = aux.item() if step == 0 else 0.98 * run_aux + 0.02 * aux.item()
        if step % 50 == 0 or step == a.steps - 1:
            print(f"step {step} loss {run:.4f} start-token shortfall {run_aux:.3f} lr {sched.get_last_lr()[0]:.2e} {time.time() - t0:.0f}s", flush=True)
        if a.snapshot_every and step and step % a.snapshot_every == 0:
            save(ema, a.out + ".partial", {"step": step})
    meta = {"steps": done, "init": a.init or "", "first_step": a.first_step, "batch": a.batch, "lr": a.lr, "ema": a.ema, "seed": a.seed, "sink_share": a.sink_share,
            "sink_weight": a.sink_weight, "scenes": a.scenes, "wall_s": round(time.time() - t0),
            "command": f"python -m lib_initedit.toy.train --out {a.out} --steps {done} --batch {a.batch} "
                       f"--sink-share {a.sink_share} --sink-weight {a.sink_weight} --scenes {a.scenes}"
                       + (f" --init {a.init} --first-step {a.first_step} --lr {a.lr}" if a.init else "")}
    save(ema, a.out, meta)
    print(f"done in {time.time() - t0:.0f}s -> {a.out}", flush=True)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
