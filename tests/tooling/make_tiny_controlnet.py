#!/usr/bin/env python3
"""Build a tiny ControlNet for the lab's tiny SD1 checkpoint (tiny-sd15), loadable by the real
sd-webui-controlnet (Mikubill) v1.1.455.  Test tooling only: nothing in the extension imports this.

How it is built (the way real ControlNets start training):
  * time_embed / input_blocks / middle_block: a copy of the base checkpoint's UNet encoder
    (`model.diffusion_model.*`), so the block layout is the base model's by construction;
  * input_hint_block (8 convs, image -> latent resolution) and the 13 "zero" convs: random
    (torch default init, fixed seed).  Real, untrained ControlNets have these at zero, which would
    make the unit a no-op; random weights make its effect visible in every pixel.
  * keys in the original lllyasviel layout without the `control_model.` prefix, float32,
    written byte-for-byte reproducibly (sorted keys, fixed header) as .safetensors.

What sd-webui-controlnet v1.1.455 does with it (scripts/controlnet_model_guess.py):
  `input_hint_block.0.weight` present and `label_emb.0.0.bias` absent -> SD1 ControlNet with
  `controlnet_default_config`; only `hint_channels` and `context_dim` are read from the file,
  `model_channels` is hard-coded to SD1.5's 320.  The tiny UNet has 32, so the lab also needs the
  one-line config shim in tests/tooling/lab_ext_cn_tiny_config (see its docstring); without it
  the load fails with a size-mismatch error.  `load_state_dict(..., strict=False)` would silently
  skip missing keys, so `--check` loads the file into CN's own `cldm.ControlNet` with strict=True.

`--kind t2i-adapter` builds a tiny T2I-Adapter instead (`t2iadapter_tiny_sd15`): CN reads its widths
from the file (`conv_in.weight`), so it loads without the shim; its features are added to the UNet's
*encoder* (after input blocks 2, 5, 8, 11), so unlike a ControlNet it changes what the layout probe sees.

Usage (lab venv):
    $LAB/venv/bin/python tests/tooling/make_tiny_controlnet.py            # -> $LAB/models/ControlNet/
    $LAB/venv/bin/python tests/tooling/make_tiny_controlnet.py --check    # + strict load/forward with CN's code
    $LAB/venv/bin/python tests/tooling/make_tiny_controlnet.py --kind t2i-adapter --check
"""
import argparse
import hashlib
import json
import os
import struct
import sys

LAB = os.environ.get("LAB") or os.path.join(os.path.expanduser("~"), "webui-lab")
DEFAULT_NAME = "control_tiny_sd15"
ADAPTER_NAME = "t2iadapter_tiny_sd15"
ENCODER_PREFIXES = ("time_embed.", "input_blocks.", "middle_block.")
UNET_PREFIX = "model.diffusion_model."


def log(*a):
    print("[make_tiny_controlnet]", *a, flush=True)


def encoder_from_checkpoint(path):
    """The base UNet's encoder weights, keyed as in a ControlNet (no prefix)."""
    from safetensors.torch import load_file

    sd = load_file(path)
    enc = {k[len(UNET_PREFIX):]: v.float().clone() for k, v in sd.items()
           if k.startswith(UNET_PREFIX) and k[len(UNET_PREFIX):].startswith(ENCODER_PREFIXES)}
    if "input_blocks.0.0.weight" not in enc:
        raise SystemExit(f"{path}: no SD1-style UNet encoder under {UNET_PREFIX!r}")
    if "label_emb.0.0.bias" in {k[len(UNET_PREFIX):] for k in sd if k.startswith(UNET_PREFIX)}:
        raise SystemExit(f"{path}: has label_emb (SDXL); this builder is for SD1 checkpoints")
    return enc


def block_out_channels(enc):
    """Output channels of every input block (what each zero conv sees) and of the middle block."""
    chans, i = [], 0
    while any(k.startswith(f"input_blocks.{i}.") for k in enc):
        # the last conv/linear with a 4-D weight in the block decides its output channels
        ws = [(k, v) for k, v in enc.items() if k.startswith(f"input_blocks.{i}.") and v.dim() == 4]
        # ResBlock: out_layers.3 ; Downsample: op ; first block: 0 ; attention keeps channels
        outs = [v.shape[0] for k, v in ws if k.endswith(("out_layers.3.weight", "op.weight"))
                or k == "input_blocks.0.0.weight"]
        chans.append(int(outs[-1]))
        i += 1
    mid = int(enc["middle_block.2.out_layers.3.weight"].shape[0])
    return chans, mid


def build(base_ckpt, seed, hint_channels=3, zero_conv_scale=1.0):
    import torch

    enc = encoder_from_checkpoint(base_ckpt)
    model_channels = int(enc["input_blocks.0.0.weight"].shape[0])
    chans, mid = block_out_channels(enc)
    g = torch.Generator().manual_seed(seed)

    def conv(cin, cout, k, scale=1.0):
        # torch's default Conv2d init (kaiming_uniform a=sqrt(5) -> U(-1/sqrt(fan_in), 1/sqrt(fan_in)))
        bound = 1.0 / (cin * k * k) ** 0.5
        w = (torch.rand(cout, cin, k, k, generator=g) * 2 - 1) * bound * scale
        b = (torch.rand(cout, generator=g) * 2 - 1) * bound * scale
        return w, b

    sd = dict(enc)
    # cldm.ControlNet.input_hint_block: conv_nd at Sequential indices 0,2,...,14 (SiLU between)
    hint = [(hint_channels, 16, 1), (16, 16, 1), (16, 32, 2), (32, 32, 1), (32, 96, 2), (96, 96, 1),
            (96, 256, 2), (256, model_channels, 1)]
    for j, (cin, cout, _stride) in enumerate(hint):
        w, b = conv(cin, cout, 3)
        sd[f"input_hint_block.{2 * j}.weight"], sd[f"input_hint_block.{2 * j}.bias"] = w, b
    for i, ch in enumerate(chans):
        w, b = conv(ch, ch, 1, zero_conv_scale)
        sd[f"zero_convs.{i}.0.weight"], sd[f"zero_convs.{i}.0.bias"] = w, b
    w, b = conv(mid, mid, 1, zero_conv_scale)
    sd["middle_block_out.0.weight"], sd["middle_block_out.0.bias"] = w, b
    info = {"model_channels": model_channels, "block_channels": chans, "middle_channels": mid,
            "context_dim": int(enc["input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"].shape[1]),
            "hint_channels": hint_channels}
    return {k: v.contiguous() for k, v in sd.items()}, info


def build_t2i_adapter(base_ckpt, seed, hint_channels=3):
    """CN's SD1 `Adapter` layout (scripts/adapter.py) with nums_rb=2, ksize=1, sk=True, use_conv=False:
    pixel-unshuffle by 8 -> conv_in -> 4 levels of 2 ResnetBlocks, level widths = the UNet's outputs of
    input blocks 2, 5, 8, 11 (the blocks CN adds the adapter's features to)."""
    import torch

    enc = encoder_from_checkpoint(base_ckpt)
    chans, _ = block_out_channels(enc)
    widths = [chans[i] for i in (2, 5, 8, 11)]
    g = torch.Generator().manual_seed(seed)

    def conv(cin, cout, k):
        bound = 1.0 / (cin * k * k) ** 0.5
        return ((torch.rand(cout, cin, k, k, generator=g) * 2 - 1) * bound,
                (torch.rand(cout, generator=g) * 2 - 1) * bound)

    cin = hint_channels * 64
    sd = {}
    sd["conv_in.weight"], sd["conv_in.bias"] = conv(cin, widths[0], 3)
    for i, out_c in enumerate(widths):
        for r in range(2):
            idx = i * 2 + r
            in_c = widths[i - 1] if (i > 0 and r == 0) else out_c
            if in_c != out_c:  # sk=True: in_conv only where the width changes; no skep
                sd[f"body.{idx}.in_conv.weight"], sd[f"body.{idx}.in_conv.bias"] = conv(in_c, out_c, 1)
            sd[f"body.{idx}.block1.weight"], sd[f"body.{idx}.block1.bias"] = conv(out_c, out_c, 3)
            sd[f"body.{idx}.block2.weight"], sd[f"body.{idx}.block2.bias"] = conv(out_c, out_c, 1)
    info = {"widths": widths, "cin": cin, "nums_rb": 2, "ksize": 1}
    return {k: v.contiguous() for k, v in sd.items()}, info


def check_adapter_with_controlnet_code(path, cn_dir, info):
    import torch
    from safetensors.torch import load_file

    adapter_mod = _import_cn_module(cn_dir, "adapter")
    net = adapter_mod.Adapter(channels=info["widths"], nums_rb=2, cin=info["cin"], ksize=1, sk=True,
                              use_conv=False, is_sdxl=False).eval()
    net.load_state_dict(load_file(path), strict=True)
    with torch.no_grad():
        outs = net(torch.rand(1, info["cin"] // 64, 64, 64, generator=torch.Generator().manual_seed(1)))
    assert [o.shape[1] for o in outs] == info["widths"], [o.shape for o in outs]
    assert [o.shape[-1] for o in outs] == [8, 4, 2, 1]
    log(f"check OK: strict load into sd-webui-controlnet's adapter.Adapter; features {[tuple(o.shape) for o in outs]}")


def save_reproducible(state_dict, path, metadata):
    """safetensors, byte-for-byte reproducible (safetensors' own writer orders metadata by hash)."""
    import torch

    header, blobs, off = {"__metadata__": {str(k): str(v) for k, v in sorted(metadata.items())}}, [], 0
    for k in sorted(state_dict):
        t = state_dict[k].detach().to(torch.float32).cpu().contiguous()
        b = t.view(-1).view(torch.uint8).numpy().tobytes()
        header[k] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
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
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _import_cn_module(cn_dir, name, webui_dir=None):
    """`scripts.<name>` of the sd-webui-controlnet checkout (it imports the WebUI's `modules` and ldm/sgm)."""
    import importlib
    import types

    webui_dir = webui_dir or os.path.join(LAB, "stable-diffusion-webui")
    for p in (os.path.join(webui_dir, "repositories", "generative-models"),
              os.path.join(webui_dir, "repositories", "stable-diffusion-stability-ai"), webui_dir, cn_dir):
        if p not in sys.path:
            sys.path.insert(0, p)
    old_argv = sys.argv
    sys.argv = [sys.argv[0]]            # modules.shared parses the command line
    try:
        # CN's scripts/ has no __init__.py; generative-models has a regular `scripts` package that
        # would win the import, so bind the name to CN's folder first (as the WebUI effectively does)
        if getattr(sys.modules.get("scripts"), "__path__", None) != [os.path.join(cn_dir, "scripts")]:
            pkg = types.ModuleType("scripts")
            pkg.__path__ = [os.path.join(cn_dir, "scripts")]
            sys.modules["scripts"] = pkg
        return importlib.import_module(f"scripts.{name}")
    finally:
        sys.argv = old_argv


def check_with_controlnet_code(path, cn_dir, webui_dir, info):
    """Load the file the way sd-webui-controlnet does (its own cldm.ControlNet and SD1 default
    config with model_channels set as the lab shim sets it), but strict, and run one forward."""
    import torch
    from safetensors.torch import load_file

    cldm = _import_cn_module(cn_dir, "cldm", webui_dir)
    controlnet_default_config = _import_cn_module(cn_dir, "controlnet_model_guess", webui_dir).controlnet_default_config
    config = dict(controlnet_default_config)
    config.update(model_channels=info["model_channels"], hint_channels=info["hint_channels"],
                  context_dim=info["context_dim"], use_fp16=False)
    net = cldm.ControlNet(**config).eval()
    sd = load_file(path)
    net.load_state_dict(sd, strict=True)        # raises on any missing/unexpected/mis-shaped key
    with torch.no_grad():
        x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
        hint = torch.rand(2, info["hint_channels"], 64, 64, generator=torch.Generator().manual_seed(1))
        ctx = torch.randn(2, 77, info["context_dim"], generator=torch.Generator().manual_seed(2))
        outs = net(x, hint, torch.tensor([999, 999]), ctx)
    shapes = [tuple(o.shape[1:2]) for o in outs]
    want = [(c,) for c in info["block_channels"]] + [(info["middle_channels"],)]
    assert shapes == want, (shapes, want)
    assert all(torch.isfinite(o).all() and o.abs().max() > 0 for o in outs)
    log(f"check OK: strict load into sd-webui-controlnet's cldm.ControlNet ({cn_dir}); "
        f"{len(outs)} residuals, channels {[s[0] for s in shapes]}, max |r| {max(o.abs().max().item() for o in outs):.3g}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default=os.path.join(LAB, "models", "Stable-diffusion", "tiny-sd15.safetensors"),
                    help="SD1 checkpoint whose UNet encoder is copied (default: the lab's tiny-sd15)")
    ap.add_argument("--kind", choices=("controlnet", "t2i-adapter"), default="controlnet")
    ap.add_argument("--out", default=None, help=f"default: $LAB/models/ControlNet/{DEFAULT_NAME} or {ADAPTER_NAME}"
                    ".safetensors")
    ap.add_argument("--seed", type=int, default=20230505)
    ap.add_argument("--hint-channels", type=int, default=3)
    ap.add_argument("--zero-conv-scale", type=float, default=1.0)
    ap.add_argument("--check", action="store_true", help="strict-load into sd-webui-controlnet's own model class")
    ap.add_argument("--cn-dir", default=os.path.join(LAB, "data", "extensions", "sd-webui-controlnet"))
    ap.add_argument("--webui-dir", default=os.path.join(LAB, "stable-diffusion-webui"))
    a = ap.parse_args()

    adapter = a.kind == "t2i-adapter"
    out = a.out or os.path.join(LAB, "models", "ControlNet", (ADAPTER_NAME if adapter else DEFAULT_NAME) + ".safetensors")
    if adapter:
        sd, info = build_t2i_adapter(a.base, a.seed, a.hint_channels)
    else:
        sd, info = build(a.base, a.seed, a.hint_channels, a.zero_conv_scale)
    meta = {"initedit-lab": f"tiny random {'T2I-Adapter' if adapter else 'ControlNet'} for tiny-sd15 (test tooling)", "seed": a.seed,
            "base": os.path.basename(a.base), **{k: json.dumps(v) for k, v in info.items()}}
    digest = save_reproducible(sd, out, meta)
    n = sum(v.numel() for v in sd.values())
    log(f"wrote {out}: {len(sd)} tensors, {n / 1e6:.2f}M params, sha256 {digest[:12]}; {info}")
    if a.check:
        if adapter:
            check_adapter_with_controlnet_code(out, a.cn_dir, info)
        else:
            check_with_controlnet_code(out, a.cn_dir, a.webui_dir, info)


if __name__ == "__main__":
    main()
