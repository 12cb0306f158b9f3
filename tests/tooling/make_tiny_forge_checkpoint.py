#!/usr/bin/env python3
"""A tiny random-weight SD1.5 checkpoint that Forge's loader (``backend/loader.py``) accepts, on CPU.

Forge reads the UNet's depth from the state dict (``huggingface_guess.detect_unet_config``) but matches
the model type on ``model_channels == 320`` and ``context_dim == 768``, and it builds CLIP-L and the VAE
from the fixed configs under ``backend/huggingface/runwayml/stable-diffusion-v1-5``. So: a shallow
320-channel UNet (3 levels, one res block and one transformer each, 8 heads of 40 like SD1.5), a
full-shape CLIP-L text encoder and a full-shape VAE, all random, in the original ldm key layout
(``model.diffusion_model.*``, ``cond_stage_model.transformer.text_model.*``, ``first_stage_model.*``).
Weights are stored in fp16 (half the size; Forge casts on load). Deterministic for a given --seed.

Run with the Forge lab's python from the Forge folder (the module classes are Forge's own):
    cd $FORGE_LAB/webui && $FORGE_LAB/venv/bin/python make_tiny_forge_checkpoint.py --out tiny.safetensors
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import torch

SD15 = os.path.join("backend", "huggingface", "runwayml", "stable-diffusion-v1-5")
UNET_CONFIG = dict(  # what huggingface_guess will read back from the keys (+ SD1.5's num_heads 8)
    in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[1, 1, 1], channel_mult=[1, 1, 1],
    transformer_depth=[1, 1, 1], transformer_depth_output=[1, 1, 1, 1, 1, 1], transformer_depth_middle=1,
    context_dim=768, num_heads=8, num_head_channels=-1, use_spatial_transformer=True, use_linear_in_transformer=False,
    adm_in_channels=None, use_checkpoint=False,
)


def log(*a):
    print("[make_tiny_forge_checkpoint]", *a, flush=True)


def reinit_zeroed(module: torch.nn.Module) -> int:
    """zero_module() output layers would make the UNet output 0 (the prompt would not matter): reinit."""
    n = 0
    for m in module.modules():
        w = getattr(m, "weight", None)
        if isinstance(w, torch.nn.Parameter) and w.dim() > 1 and float(w.detach().abs().max()) == 0 and hasattr(m, "reset_parameters"):
            m.reset_parameters()
            n += 1
    return n


def build(forge: str, seed: int) -> dict[str, torch.Tensor]:
    sys.path[:0] = [forge, os.path.join(forge, "packages_3rdparty"), os.path.join(forge, "repositories", "huggingface_guess")]
    sys.argv[1:] = ["--always-cpu"]  # backend.args parses the command line on import
    from backend.nn.unet import IntegratedUNet2DConditionModel
    from backend.nn.vae import IntegratedAutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel

    sd: dict[str, torch.Tensor] = {}
    torch.manual_seed(seed)
    unet = IntegratedUNet2DConditionModel(**UNET_CONFIG)
    log(f"UNet: {sum(p.numel() for p in unet.parameters()) / 1e6:.1f}M params, re-initialised {reinit_zeroed(unet)} zeroed layers")
    sd.update({f"model.diffusion_model.{k}": v for k, v in unet.state_dict().items()})

    torch.manual_seed(seed + 1)
    clip_cfg = CLIPTextConfig.from_pretrained(os.path.join(forge, SD15, "text_encoder"))
    clip = CLIPTextModel(clip_cfg)
    log(f"CLIP-L: {sum(p.numel() for p in clip.parameters()) / 1e6:.1f}M params (hidden {clip_cfg.hidden_size}, {clip_cfg.num_hidden_layers} layers)")
    sd.update({f"cond_stage_model.transformer.{k}": v for k, v in clip.state_dict().items() if not k.endswith("position_ids")})

    torch.manual_seed(seed + 2)
    vae_cfg = IntegratedAutoencoderKL.load_config(os.path.join(forge, SD15, "vae"))
    vae = IntegratedAutoencoderKL.from_config(vae_cfg)
    log(f"VAE: {sum(p.numel() for p in vae.parameters()) / 1e6:.1f}M params")
    sd.update({f"first_stage_model.{k}": v for k, v in vae.state_dict().items()})
    return {k: v.detach().to(torch.float16) if v.is_floating_point() else v.detach() for k, v in sd.items()}


def save(state_dict: dict[str, torch.Tensor], path: str) -> None:
    """Byte-reproducible safetensors (sorted keys, no metadata map order)."""
    import struct

    dt = {torch.float32: "F32", torch.float16: "F16", torch.int64: "I64"}
    header, blobs, off = {}, [], 0
    header["__metadata__"] = {"initedit": "tiny random-weight SD1.5 for the Forge lab"}
    for k in sorted(state_dict):
        t = state_dict[k].contiguous()
        b = t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[k] = {"dtype": dt[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    log(f"saved {path}: {len(state_dict)} tensors, {os.path.getsize(path) / 1e6:.0f} MB, sha256 {h.hexdigest()[:12]}")


def check(forge: str, path: str) -> None:
    """What Forge's loader will guess from the file."""
    sys.path.insert(0, os.path.join(forge, "repositories", "huggingface_guess"))
    import huggingface_guess
    from safetensors.torch import load_file

    sd = load_file(path)
    guess = huggingface_guess.guess(sd)
    log(f"huggingface_guess: {type(guess).__name__} ({guess.huggingface_repo}); unet_config "
        f"channel_mult={guess.unet_config.get('channel_mult')} transformer_depth={guess.unet_config.get('transformer_depth')}")
    if type(guess).__name__ != "SD15":
        raise SystemExit(f"loader would see {type(guess).__name__}, not SD15")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--forge", default=os.getcwd(), help="the Forge folder (default: the current one)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    with torch.no_grad():
        save(build(a.forge, a.seed), a.out)
    check(a.forge, a.out)


if __name__ == "__main__":
    main()
