#!/usr/bin/env python3
"""Build a tiny, randomly initialised SD 2.x (768-v style) checkpoint that the real AUTOMATIC1111 WebUI
loads on the CPU: v-prediction, OpenCLIP text encoder, the SD2 UNet layout.  Test tooling only.

What it writes into ``<models-dir>/Stable-diffusion/``:
  tiny-sd2v.yaml          a shrunk copy of ldm's configs/stable-diffusion/v2-inference-v.yaml:
                          ``parameterization: "v"``, ``use_linear_in_transformer: True`` (SD2's Linear
                          proj_in/proj_out), heads of a fixed width (``num_head_channels``, as SD2), and
                          ``FrozenOpenCLIPEmbedder`` with ``layer: penultimate`` on a tiny open_clip arch.
                          A1111 uses a .yaml beside the checkpoint instead of guessing (sd_models_config.
                          find_checkpoint_config_near_filename), so no v-prediction detection runs.
  tiny-sd2v.safetensors   the weights: ``model.diffusion_model.*``, ``first_stage_model.*`` and the
                          OpenCLIP text tower under ``cond_stage_model.model.*`` (visual tower deleted,
                          as ldm does), which makes A1111 call it SD2 (``model.is_sd2``) and wrap the
                          encoder in ``sd_hijack_open_clip.FrozenOpenCLIPEmbedderWithCustomWords``.

The text tower's arch is the open_clip config ``tiny-bigG`` that the lab's setup.sh already installs into
the venv's open_clip/model_configs (``make_tiny_model.py --kind register-openclip``; width 64, 4 layers,
4 heads, GELU like ViT-H-14).  This script installs the same json if it is missing, so the checkpoint
loads in any venv the script ran in.  A1111 builds the tower with ``pretrained=None`` during model load
(sd_disable_initialization), and the yaml has ``version: null``, so nothing is downloaded here either.
Tokenizer: open_clip's own BPE (bundled with open_clip_torch), the one A1111 uses for SD2.

Byte-reproducible: fixed seeds, sorted keys, a fixed safetensors header (the file hash A1111 shows is
stable across rebuilds).

Usage (the lab's venv: it needs ldm from the WebUI's repositories/ and open_clip):
    $LAB/venv/bin/python tests/tooling/make_tiny_sd2.py                    # -> $LAB/models/Stable-diffusion/
    $LAB/venv/bin/python tests/tooling/make_tiny_sd2.py --models-dir DIR [--webui WEBUI_DIR]
"""
import argparse
import copy
import hashlib
import json
import os
import struct
import sys

LAB = os.environ.get("LAB") or os.path.join(os.path.expanduser("~"), "webui-lab")
NAME = "tiny-sd2v"
OPENCLIP_ARCH = "tiny-bigG"
# identical to the lab's make_tiny_model.TINY_BIGG (its SDXL embedder 1); only the text tower is used here
OPENCLIP_CFG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "mlp_ratio": 2, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 4},
}
TEXT_WIDTH = OPENCLIP_CFG["text_cfg"]["width"]
UNET_CH = 32
HEAD_CH = 8            # SD2 fixes the head width (64) and lets the head count grow: here 4 / 8 / 16 heads
VAE_CH = 32


def log(*a):
    print("[make_tiny_sd2]", *a, flush=True)


def register_openclip_arch():
    """Make ``OPENCLIP_ARCH`` known to open_clip, now and in every later process of this venv."""
    import open_clip
    import open_clip.factory as of

    path = os.path.join(os.path.dirname(open_clip.__file__), "model_configs", OPENCLIP_ARCH + ".json")
    try:
        present = json.load(open(path))
    except (OSError, ValueError):
        present = None
    if present is None:
        with open(path, "w") as f:
            json.dump(OPENCLIP_CFG, f, indent=2)
        log("installed open_clip model config", path)
    elif present != OPENCLIP_CFG:
        raise SystemExit(f"{path} exists with another content than this script's {OPENCLIP_ARCH}; refusing to "
                         "overwrite it (the lab's tiny-sdxl uses it)")
    of._MODEL_CONFIGS[OPENCLIP_ARCH] = copy.deepcopy(OPENCLIP_CFG)


def tiny_config(webui):
    from omegaconf import OmegaConf

    src = os.path.join(webui, "repositories", "stable-diffusion-stability-ai", "configs", "stable-diffusion",
                       "v2-inference-v.yaml")
    cfg = OmegaConf.load(src)
    p = cfg.model.params
    assert p.parameterization == "v", src
    u = p.unet_config.params
    u.use_checkpoint = False
    u.use_fp16 = False
    u.model_channels = UNET_CH            # 320 -> 32; SD2 topology kept: 4 levels, 2 res blocks, attention at
    u.channel_mult = [1, 2, 4, 4]         # ds 1, 2, 4 -> the same 16 attn2 module names as SD2 / SD1
    u.num_res_blocks = 2
    u.attention_resolutions = [4, 2, 1]
    u.num_head_channels = HEAD_CH         # 64 -> 8
    u.use_linear_in_transformer = True
    u.transformer_depth = 1
    u.context_dim = TEXT_WIDTH            # 1024 -> 64
    dd = p.first_stage_config.params.ddconfig
    dd.ch = VAE_CH                        # 128 -> 32, 4 levels: still /8 and 4 latent channels
    dd.ch_mult = [1, 2, 2, 2]
    dd.num_res_blocks = 1
    c = p.cond_stage_config.params
    c.arch = OPENCLIP_ARCH                # ViT-H-14 -> tiny
    c.version = None                      # laion2b_s32b_b79k -> no pretrained weights
    c.device = "cpu"
    assert c.layer == "penultimate"
    return cfg


def reinit_zeroed_layers(module, seed):
    """ldm zero-initialises output convs and proj_out; random-weight tests need them non-zero."""
    import torch

    torch.manual_seed(seed)
    n = 0
    for _, m in module.named_modules():
        w = getattr(m, "weight", None)
        if isinstance(w, torch.nn.Parameter) and w.dim() > 1 and w.detach().abs().max() == 0 \
                and hasattr(m, "reset_parameters"):
            m.reset_parameters()
            n += 1
    return n


def make_vae_posterior_sharp(vae, logvar=-30.0):
    """Like a trained VAE: near-deterministic posterior (img2img would otherwise depend on the global RNG)."""
    import torch

    qc = vae.quant_conv
    half = qc.out_channels // 2
    with torch.no_grad():
        qc.weight[half:] = 0
        qc.bias[half:] = logvar


def save_checkpoint(state_dict, path, metadata):
    """.safetensors, byte-for-byte reproducible (sorted keys, fixed metadata order)."""
    import torch
    from safetensors.torch import load_file

    dt = {torch.float32: "F32", torch.float16: "F16", torch.int64: "I64"}
    header, blobs, off = {"__metadata__": {str(k): str(v) for k, v in sorted(metadata.items())}}, [], 0
    for k in sorted(state_dict):
        t = state_dict[k].detach().cpu().contiguous()
        b = t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[k] = {"dtype": dt[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)
    back = load_file(path)
    assert set(back) == set(state_dict) and all(torch.equal(back[k], state_dict[k].cpu()) for k in back)
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    log(f"saved {path}: {len(back)} tensors, {sum(v.numel() for v in back.values()) / 1e6:.2f}M params, "
        f"{os.path.getsize(path) / 1e6:.1f} MB, sha256 {digest[:10]}")
    return digest


def smoke_test(model):
    import torch

    with torch.no_grad():
        c = model.get_learned_conditioning(["a red car, best quality"])
        x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
        v = model.apply_model(x, torch.tensor([500]), c)
        img = model.decode_first_stage(x)
    assert model.parameterization == "v"
    assert c.shape == (1, 77, TEXT_WIDTH) and v.shape == x.shape and img.shape == (1, 3, 128, 128), \
        (c.shape, v.shape, img.shape)
    assert torch.isfinite(c).all() and torch.isfinite(v).all() and torch.isfinite(img).all()
    log(f"smoke test OK: cond {tuple(c.shape)}, v std {v.std():.3f}, decoded {tuple(img.shape)}")


def build(models_dir, webui, seed=1234, name=NAME):
    import torch
    from omegaconf import OmegaConf

    register_openclip_arch()
    cfg = tiny_config(webui)
    sd_dir = os.path.join(models_dir, "Stable-diffusion")
    os.makedirs(sd_dir, exist_ok=True)
    yaml_path = os.path.join(sd_dir, name + ".yaml")
    OmegaConf.save(cfg, yaml_path)
    log("wrote", yaml_path)

    repo = os.path.join(webui, "repositories", "stable-diffusion-stability-ai")
    if repo not in sys.path:
        sys.path.insert(0, repo)
    from ldm.util import instantiate_from_config

    torch.manual_seed(seed)
    model = instantiate_from_config(cfg.model).eval()
    n = reinit_zeroed_layers(model.model, seed + 1)
    make_vae_posterior_sharp(model.first_stage_model)
    count = lambda m: sum(q.numel() for q in m.parameters()) / 1e6  # noqa: E731
    log(f"LatentDiffusion (v): unet {count(model.model):.2f}M, vae {count(model.first_stage_model):.2f}M, "
        f"text {count(model.cond_stage_model):.2f}M params; re-initialised {n} zeroed layers")
    smoke_test(model)
    sd = model.state_dict()
    assert "cond_stage_model.model.ln_final.weight" in sd and not any(".visual." in k for k in sd)
    assert "model.diffusion_model.input_blocks.1.1.proj_in.weight" in sd and \
        sd["model.diffusion_model.input_blocks.1.1.proj_in.weight"].dim() == 2  # Linear, as SD2
    return save_checkpoint(sd, os.path.join(sd_dir, name + ".safetensors"),
                           {"a1111-lab": "tiny random SD2.x (v-prediction, OpenCLIP) checkpoint", "seed": str(seed)})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models-dir", default=os.path.join(LAB, "models"))
    ap.add_argument("--webui", default=os.environ.get("WEBUI") or os.path.join(LAB, "stable-diffusion-webui"),
                    help="a stable-diffusion-webui folder with repositories/stable-diffusion-stability-ai")
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    build(a.models_dir, a.webui, a.seed)


if __name__ == "__main__":
    main()
