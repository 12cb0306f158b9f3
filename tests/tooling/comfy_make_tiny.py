"""Build the ComfyUI lab's tiny random-weight SD1.5-like checkpoint (never committed).

Run with the lab's Python from the ComfyUI folder:  python comfy_make_tiny.py <ComfyUI dir> <out.safetensors>
The UNet, CLIP and VAE (TAESD) get fixed-seed random weights; the file is read back by ComfyUI's own
``load_checkpoint_guess_config`` through the config registered by ``comfy_tiny_model`` (same folder).
"""
import math
import os
import sys

comfy_dir, out = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
sys.path.insert(0, comfy_dir)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.chdir(comfy_dir)
sys.argv = [sys.argv[0], "--cpu"]

import torch  # noqa: E402

import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()
import comfy.model_management  # noqa: E402,F401
import comfy.model_patcher  # noqa: E402
import comfy.sd  # noqa: E402
import comfy.taesd.taesd  # noqa: E402

import comfy_tiny_model as tiny  # noqa: E402


def init_(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for name, p in module.named_parameters():
        with torch.no_grad():
            if p.dim() == 0:  # scalars keep their defaults (TAESD's vae_scale 1, vae_shift 0)
                continue
            if p.dim() >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))
            elif name.endswith("weight"):  # every 1-D weight here is a norm's scale (GroupNorm, LayerNorm)
                p.fill_(1.0)
            else:
                p.zero_()


config = tiny.TinySD15({**tiny.TinySD15.unet_config, **tiny.UNET_KWARGS})
model = config.get_model({})
init_(model.diffusion_model, 1)
patcher = comfy.model_patcher.ModelPatcher(model, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))

clip = comfy.sd.CLIP(config.clip_target(), parameters=0)
init_(clip.cond_stage_model, 2)

taesd = comfy.taesd.taesd.TAESD(latent_channels=4)
init_(taesd, 3)
vae = comfy.sd.VAE(sd={k: v for k, v in taesd.state_dict().items()})

os.makedirs(os.path.dirname(out), exist_ok=True)
comfy.sd.save_checkpoint(out, patcher, clip, vae, metadata={"initedit": "tiny random-weight SD1.5-like test model"})
print(f"wrote {out} ({os.path.getsize(out) / 1e6:.1f} MB)")
