#!/usr/bin/env python3
"""A tiny random-weight SD1.5 checkpoint that Forge's loader (``backend/loader.py``) accepts, on CPU
(Forge 2 and Forge Neo: the same ``backend/`` classes; Neo vendors huggingface_guess under modules_forge/packages).

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


SDXL = os.path.join("backend", "huggingface", "stabilityai", "stable-diffusion-xl-base-1.0")
SDXL_UNET_CONFIG = dict(  # huggingface_guess matches SDXL on transformer_depth [0,0,2,2,10,10] (per input res
    # block), context 2048, adm 2816, linear proj; channels may stay 320 and the output / middle side shallow
    in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[2, 2, 2], channel_mult=[1, 1, 1],
    transformer_depth=[0, 0, 2, 2, 10, 10], transformer_depth_output=[0, 0, 0, 1, 1, 1, 1, 1, 1],
    transformer_depth_middle=1, context_dim=2048, num_heads=-1, num_head_channels=64, use_spatial_transformer=True,
    use_linear_in_transformer=True, adm_in_channels=2816, num_classes="sequential", use_checkpoint=False,
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


def _guess_paths(forge: str) -> list[str]:
    """Where huggingface_guess lives: cloned into repositories/ (Forge 2) or vendored (Neo: modules_forge/packages)."""
    return [os.path.join(forge, "repositories", "huggingface_guess"), os.path.join(forge, "modules_forge", "packages")]


def _import_forge(forge: str) -> None:
    sys.path[:0] = [forge, os.path.join(forge, "packages_3rdparty"), *_guess_paths(forge)]
    # backend.args parses the command line on import (Forge 2: --always-cpu; Neo: --cpu, unknown flags ignored)
    sys.argv[1:] = ["--cpu"] if os.path.isdir(os.path.join(forge, "modules_forge", "packages")) else ["--always-cpu"]


def build(forge: str, seed: int) -> dict[str, torch.Tensor]:
    _import_forge(forge)
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


def build_sdxl(forge: str, seed: int) -> dict[str, torch.Tensor]:
    """SDXL: shallow 320-channel UNet with SDXL's input-side transformer depths, full-shape CLIP-L and
    CLIP-G (open_clip key layout, as SDXL checkpoints store it) and VAE, random, fp16."""
    _import_forge(forge)
    from backend.nn.unet import IntegratedUNet2DConditionModel
    from backend.nn.vae import IntegratedAutoencoderKL
    from huggingface_guess import diffusers_convert
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    half = lambda t: t.detach().to(torch.float16) if t.is_floating_point() else t.detach()  # noqa: E731
    sd: dict[str, torch.Tensor] = {}
    torch.manual_seed(seed)
    unet = IntegratedUNet2DConditionModel(**SDXL_UNET_CONFIG)
    log(f"UNet: {sum(p.numel() for p in unet.parameters()) / 1e6:.1f}M params, re-initialised {reinit_zeroed(unet)} zeroed layers")
    sd.update({f"model.diffusion_model.{k}": half(v) for k, v in unet.state_dict().items()})
    del unet

    torch.manual_seed(seed + 1)
    clip_l = CLIPTextModel(CLIPTextConfig.from_pretrained(os.path.join(forge, SDXL, "text_encoder")))
    sd.update({f"conditioner.embedders.0.transformer.{k}": half(v) for k, v in clip_l.state_dict().items()
               if not k.endswith("position_ids")})
    log(f"CLIP-L: {sum(p.numel() for p in clip_l.parameters()) / 1e6:.1f}M params")
    del clip_l

    torch.manual_seed(seed + 3)
    g_cfg = CLIPTextConfig.from_pretrained(os.path.join(forge, SDXL, "text_encoder_2"))
    clip_g = CLIPTextModelWithProjection(g_cfg)
    log(f"CLIP-G: {sum(p.numel() for p in clip_g.parameters()) / 1e6:.1f}M params (hidden {g_cfg.hidden_size}, {g_cfg.num_hidden_layers} layers)")
    g = {f"clip_g.transformer.{k}": half(v) for k, v in clip_g.state_dict().items() if not k.endswith("position_ids")}
    del clip_g
    g = diffusers_convert.convert_text_enc_state_dict_v20(g, "clip_g")  # HF -> open_clip names, as Forge saves SDXL
    sd.update({"conditioner.embedders.1.model" + k[len("clip_g"):]: v for k, v in g.items()})
    del g

    torch.manual_seed(seed + 2)
    vae = IntegratedAutoencoderKL.from_config(IntegratedAutoencoderKL.load_config(os.path.join(forge, SDXL, "vae")))
    log(f"VAE: {sum(p.numel() for p in vae.parameters()) / 1e6:.1f}M params")
    sd.update({f"first_stage_model.{k}": half(v) for k, v in vae.state_dict().items()})
    return sd


LUMINA2 = os.path.join("backend", "huggingface", "neta-art", "Neta-Lumina")
LUMINA2_DIT = dict(  # what Neo's huggingface_guess reads back for Lumina 2 (dim 2304 fixes heads, rope, ffn);
    # the depth is counted from the keys, so two layers (and the two refiner stacks) keep it small
    patch_size=2, in_channels=16, dim=2304, n_layers=2, n_heads=24, n_kv_heads=8, qk_norm=True, cap_feat_dim=2304,
    axes_dims=[32, 32, 32], axes_lens=[300, 512, 512], rope_theta=10000.0, ffn_dim_multiplier=4.0,
)


def random_like_meta(module: torch.nn.Module, seed: int, dtype=torch.float16, norm: float = 0.0) -> dict[str, torch.Tensor]:
    """Random weights for a module built on the meta device, tensor by tensor straight in ``dtype`` (a
    full-shape 2.6 B-parameter text encoder never exists in fp32): N(0, 0.02) for matrices and embeddings,
    ``norm`` for 1-D norm weights (0 suits Gemma's RMSNorm, which scales by 1 + w; a plain RMSNorm needs 1, or
    the encoder's output is all zeros) and zeros for biases."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, t in module.state_dict().items():
        if t.dim() >= 2:
            out[name] = (torch.randn(t.shape, generator=g, dtype=torch.float32) * 0.02).to(dtype)
        else:
            out[name] = torch.full(t.shape, norm if "norm" in name else 0.0, dtype=dtype)
    return out


def build_lumina2(forge: str, seed: int) -> dict[str, torch.Tensor]:
    """Lumina 2 (Neta-Lumina's all-in-one layout, the keys Neo's loader splits): ``model.diffusion_model.*`` a
    2-layer NextDiT at Lumina 2's width (Neo's own class), ``text_encoders.gemma2_2b.transformer.*`` a
    full-shape Gemma 2 2B (Neo's Gemma2_2B, built from the fixed config), ``vae.*`` the 16-channel Flux VAE."""
    _import_forge(forge)
    from backend.nn.llm.llama import Gemma2_2B
    from backend.nn.lumina import NextDiT
    from backend.nn.vae import IntegratedAutoencoderKL
    from backend.operations import using_forge_operations
    from backend.utils import read_arbitrary_config

    half = lambda t: t.detach().to(torch.float16) if t.is_floating_point() else t.detach()  # noqa: E731
    sd: dict[str, torch.Tensor] = {}
    torch.manual_seed(seed)
    dit = NextDiT(**LUMINA2_DIT)
    log(f"NextDiT: {sum(p.numel() for p in dit.parameters()) / 1e6:.1f}M params, re-initialised {reinit_zeroed(dit)} zeroed layers")
    sd.update({f"model.diffusion_model.{k}": half(v) for k, v in dit.state_dict().items()})
    del dit
    # Neo's LLMs are built inside its operations context (its RMSNorm takes ``add``), as its loader builds them
    with using_forge_operations(device=torch.device("meta"), dtype=torch.float16, manual_cast_enabled=True):
        gemma = Gemma2_2B(read_arbitrary_config(os.path.join(forge, LUMINA2, "text_encoder")))
    te = random_like_meta(gemma, seed + 1)
    log(f"Gemma 2 2B: {sum(t.numel() for t in te.values()) / 1e6:.1f}M params (full shape, random)")
    sd.update({f"text_encoders.gemma2_2b.transformer.{k}": v for k, v in te.items()})
    del te
    torch.manual_seed(seed + 2)
    vae = IntegratedAutoencoderKL.from_config(IntegratedAutoencoderKL.load_config(os.path.join(forge, LUMINA2, "vae")))
    log(f"VAE (16 channels): {sum(p.numel() for p in vae.parameters()) / 1e6:.1f}M params")
    sd.update({f"vae.{k}": half(v) for k, v in vae.state_dict().items()})
    return sd


ANIMA = os.path.join("backend", "huggingface", "circlestone-labs", "Anima")
ANIMA_DIT = dict(  # Neo's huggingface_guess fixes Anima's DiT whatever the file holds: 2048 wide, 28 blocks
    in_channels=16, out_channels=16, patch_spatial=2, patch_temporal=1, model_channels=2048, concat_padding_mask=True,
    crossattn_emb_channels=1024, adaln_lora_dim=256, num_blocks=28, num_heads=16, rope_h_extrapolation_ratio=4.0,
    rope_w_extrapolation_ratio=4.0, rope_t_extrapolation_ratio=1.0,
)


def build_anima(forge: str, seed: int) -> dict[str, torch.Tensor]:
    """Anima (Cosmos-Predict2 DiT, Qwen3 0.6B text encoder with its LLM adapter, Qwen-Image's Wan VAE: latents
    (B, 16, T, H, W)) in its all-in-one layout: ``net.*`` the DiT at full size (random, built tensor by tensor in
    fp16: 2 B parameters) with the adapter's ``net.llm_adapter.*`` (Neo moves it to the encoder),
    ``text_encoders.qwen3_06b.transformer.*`` a full-shape Qwen3 0.6B, ``vae.*`` the 3-D Wan VAE."""
    _import_forge(forge)
    from backend.nn.anima import Anima
    from backend.nn.llm.llama import Qwen3_06B
    from backend.nn.wan_vae import WanVAE
    from backend.operations import using_forge_operations
    from backend.utils import read_arbitrary_config

    sd: dict[str, torch.Tensor] = {}
    # every part on the meta device and filled here: Neo's operations skip weight initialisation, so a module
    # built with them holds uninitialised memory (the Wan VAE decoded NaN)
    with using_forge_operations(device=torch.device("meta"), dtype=torch.float16, manual_cast_enabled=True):
        vae = WanVAE.from_config(WanVAE.load_config(os.path.join(forge, ANIMA, "vae")))
        dit = Anima(**ANIMA_DIT)
        te = Qwen3_06B(read_arbitrary_config(os.path.join(forge, ANIMA, "text_encoder")))
    # plain RMSNorms here: weight 1 (an all-zero prompt embedding turns into NaN latents in Neo's Anima)
    weights = random_like_meta(dit, seed, norm=1.0)
    log(f"Anima DiT: {sum(t.numel() for t in weights.values()) / 1e6:.1f}M params (full size, random)")
    sd.update({f"net.{k}": v for k, v in weights.items()})
    del weights
    weights = random_like_meta(vae, seed + 2, norm=1.0)
    log(f"Wan VAE (16 channels, 3-D): {sum(t.numel() for t in weights.values()) / 1e6:.1f}M params (random)")
    sd.update({f"vae.{k}": v for k, v in weights.items()})
    weights = random_like_meta(te, seed + 1, norm=1.0)
    log(f"Qwen3 0.6B + LLM adapter: {sum(t.numel() for t in weights.values()) / 1e6:.1f}M params (full shape, random)")
    for k, v in weights.items():
        sd[f"net.{k}" if k.startswith("llm_adapter.") else f"text_encoders.qwen3_06b.transformer.{k}"] = v
    del weights
    return sd


def save(state_dict: dict[str, torch.Tensor], path: str, note: str = "tiny random-weight SD1.5 for the Forge lab") -> None:
    """Byte-reproducible safetensors (sorted keys), written tensor by tensor."""
    import struct

    dt = {torch.float32: "F32", torch.float16: "F16", torch.int64: "I64"}
    header, off = {"__metadata__": {"initedit": note}}, 0
    keys = sorted(state_dict)
    for k in keys:
        t = state_dict[k]
        n = t.numel() * t.element_size()
        header[k] = {"dtype": dt[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + n]}
        off += n
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for k in keys:
            t = state_dict[k].contiguous()
            if t.numel():
                f.write(t.view(-1).view(torch.uint8).numpy().tobytes())
    os.replace(tmp, path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    log(f"saved {path}: {len(state_dict)} tensors, {os.path.getsize(path) / 1e6:.0f} MB, sha256 {h.hexdigest()[:12]}")


def write_vae_approx(path: str, seed: int) -> None:
    """Forge's live preview for SDXL loads models/VAE-approx/vaeapprox-sdxl.pt and downloads it when absent
    (which fails offline and fails the generation): a random one of the same shape (modules/sd_vae_approx.py)."""
    shapes = [(8, 4, 7), (16, 8, 5), (32, 16, 3), (64, 32, 3), (32, 64, 3), (16, 32, 3), (8, 16, 3), (3, 8, 3)]
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for i, (out, inp, k) in enumerate(shapes, start=1):
        sd[f"conv{i}.weight"] = torch.randn(out, inp, k, k, generator=g) * (inp * k * k) ** -0.5
        sd[f"conv{i}.bias"] = torch.zeros(out)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save(sd, path)
    log(f"saved {path} (random VAEApprox for SDXL previews)")


def check(forge: str, path: str, kind: str = "sd15") -> None:
    """What Forge's loader will guess from the file."""
    sys.path[:0] = _guess_paths(forge)
    import huggingface_guess
    from safetensors.torch import load_file

    sd = load_file(path)
    guess = huggingface_guess.guess(sd)
    log(f"huggingface_guess: {type(guess).__name__} ({guess.huggingface_repo}); unet_config "
        f"channel_mult={guess.unet_config.get('channel_mult')} transformer_depth={guess.unet_config.get('transformer_depth')}")
    want = {"sd15": "SD15", "sdxl": "SDXL", "lumina2": "Lumina2", "anima": "Anima"}[kind]
    if type(guess).__name__ != want:
        raise SystemExit(f"loader would see {type(guess).__name__}, not {want}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--forge", default=os.getcwd(), help="the Forge folder (default: the current one)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kind", choices=["sd15", "sdxl", "lumina2", "anima"], default="sd15")
    a = ap.parse_args()
    with torch.no_grad():
        if a.kind == "sd15":
            save(build(a.forge, a.seed), a.out)
        elif a.kind == "anima":
            save(build_anima(a.forge, a.seed), a.out, "tiny random-weight Anima (Neo) for the Forge lab")
        elif a.kind == "lumina2":
            save(build_lumina2(a.forge, a.seed), a.out, "tiny random-weight Lumina 2 (Neo) for the Forge lab")
        else:
            save(build_sdxl(a.forge, a.seed), a.out, "tiny random-weight SDXL for the Forge lab")
            models = os.path.dirname(os.path.dirname(os.path.abspath(a.out)))
            write_vae_approx(os.path.join(models, "VAE-approx", "vaeapprox-sdxl.pt"), a.seed)
    check(a.forge, a.out, a.kind)


if __name__ == "__main__":
    main()
