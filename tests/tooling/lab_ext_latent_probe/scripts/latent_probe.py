"""Test-only WebUI extension: saves each batch's first-pass latents (before the VAE) so the e2e tier can
check properties that hold exactly in latent space ('Keep the rest': the outside is the base's, bit for bit).

Set INITEDIT_LATENT_DIR; every batch writes <dir>/<n>.pt with {"seeds": [...], "latents": tensor} where n
counts batches. Not part of InitEdit; installed only into test servers.
"""
import itertools
import os

import torch

import modules.scripts as scripts

_counter = itertools.count()


class LatentProbe(scripts.Script):
    sorting_priority = 1000

    def title(self):
        return "Latent probe (InitEdit tests)"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def post_sample(self, p, ps, *args):
        folder = os.environ.get("INITEDIT_LATENT_DIR")
        if not folder or getattr(p, "is_hr_pass", False):
            return
        os.makedirs(folder, exist_ok=True)
        torch.save({"seeds": list(getattr(p, "seeds", [])), "latents": ps.samples.detach().float().cpu()},
                   os.path.join(folder, f"{next(_counter):06d}.pt"))
