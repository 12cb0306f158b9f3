"""Test-only WebUI extension for InitEdit's e2e tier (installed only into test servers, never shipped):

- saves each batch's first-pass latents (before the VAE) to $INITEDIT_LATENT_DIR/<n>.pt as
  {"seeds": [...], "latents": tensor}, so properties that hold exactly in latent space can be checked;
- GET /initedit-test/unet: how many modules of the UNet have an instance ``forward`` and how many hooks, to
  check that nothing is left behind after a generation (success, error, interrupt);
- "Fake IP-Adapter" (args [true, 0]; [false, n] raises inside the UNet at its n-th attn2 call instead): an IP-Adapter-style per-instance patch of every ``attn2.forward`` that
  adds a small term, for the duration of the generation, to check that InitEdit's guidance composes with it.
"""
import itertools
import os

import torch

import modules.scripts as scripts
from modules import script_callbacks, shared

_counter = itertools.count()


def _unet():
    model = shared.sd_model
    return getattr(getattr(model, "model", None), "diffusion_model", None)


def unet_state():
    unet = _unet()
    if unet is None:
        return {"instance_forwards": -1, "hooks": -1}
    forwards = sum(1 for m in unet.modules() if "forward" in vars(m))
    hooks = sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in unet.modules())
    return {"instance_forwards": forwards, "hooks": hooks}


class LatentProbe(scripts.Script):
    sorting_priority = 1000

    def title(self):
        return "Latent probe (InitEdit tests)"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def post_sample(self, p, ps, *args):
        folder = os.environ.get("INITEDIT_LATENT_DIR")
        if not folder or getattr(p, "is_hr_pass", False) or not isinstance(ps.samples, torch.Tensor):
            return  # (with hires fix the samples arrive decoded)
        os.makedirs(folder, exist_ok=True)
        torch.save({"seeds": list(getattr(p, "seeds", [])), "latents": ps.samples.detach().float().cpu()},
                   os.path.join(folder, f"{next(_counter):06d}.pt"))


class FakeIPAdapter(scripts.Script):
    sorting_priority = 1001

    def title(self):
        return "Fake IP-Adapter (InitEdit tests)"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        import gradio as gr

        return [gr.Checkbox(False, label="Fake IP-Adapter", elem_id=self.elem_id("on")),
                gr.Number(0, label="Fail at attn2 call", elem_id=self.elem_id("fail"))]

    def process(self, p, on=False, fail_at=0, *args):
        self._patched = []
        unet = _unet()
        if unet is None:
            return
        if fail_at:
            self._fail_at(unet, int(fail_at))
        if not on:
            return
        for name, module in unet.named_modules():
            if name.endswith("attn2"):
                had_own, saved = "forward" in vars(module), vars(module).get("forward")
                module.forward = self._patch(module.forward)
                self._patched.append((module, had_own, saved))

    @staticmethod
    def _fail_at(unet, n):
        """Raise from inside the UNet at its n-th attn2 call (mid-sampling), removing this hook as it does."""
        module = next(m for name, m in unet.named_modules() if name.endswith("attn2"))
        calls = {"n": 0}

        def hook(mod, args):
            calls["n"] += 1
            if calls["n"] >= n:
                handle.remove()
                raise RuntimeError("fake failure inside the UNet (InitEdit test)")

        handle = module.register_forward_pre_hook(hook)

    @staticmethod
    def _patch(inner):
        def forward(x, context=None, *args, **kwargs):
            out = inner(x, context=context, *args, **kwargs)
            return out + 0.5 * x[..., :1]  # an extra term, as IP-Adapter adds its image attention (LayerNorm'd x has zero mean)
        return forward

    def postprocess(self, p, processed, *args):
        for module, had_own, saved in reversed(getattr(self, "_patched", [])):
            if had_own:
                module.forward = saved
            else:
                del module.forward
        self._patched = []


def _routes(_demo, app):
    app.add_api_route("/initedit-test/unet", unet_state, methods=["GET"])


script_callbacks.on_app_started(_routes)
