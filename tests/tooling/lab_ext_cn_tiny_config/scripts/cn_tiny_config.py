"""Lab-only WebUI extension (test tooling; never shipped with InitEdit): lets the real
sd-webui-controlnet v1.1.455 load ControlNets built for the lab's *tiny* SD1 checkpoint.

Why: CN's `scripts/controlnet_model_guess.py` builds every SD1 ControlNet from the module-level dict
`controlnet_default_config`, whose `model_channels` is hard-coded to SD1.5's 320 (only hint_channels
and context_dim are read from the file).  The lab's tiny-sd15 UNet has 32 channels, so a ControlNet
for it fails to load ("size mismatch for input_blocks.0.0.weight").  This shim sets that one number
to the loaded SD1 UNet's `model_channels` (back to 320 for a real SD1.5), nothing else: CN's model
class, hook (`UnetHook`, `forward_webui`), preprocessors, caches and API stay CN's own code.

Install in the lab:  ln -s <repo>/tests/tooling/lab_ext_cn_tiny_config $LAB/data/extensions/zz-lab-cn-tiny-config
"""
import os
import sys

from modules import script_callbacks, sd_models

_TAG = "[lab-cn-tiny-config]"


def _guess_modules():
    for name, mod in list(sys.modules.items()):
        if name.endswith("controlnet_model_guess") and isinstance(getattr(mod, "controlnet_default_config", None), dict):
            yield mod


def _sd1_model_channels(sd_model):
    if sd_model is None or getattr(sd_model, "is_sdxl", False):
        return None
    unet = getattr(getattr(sd_model, "model", None), "diffusion_model", None)
    return getattr(unet, "model_channels", None)


def patch(sd_model=None):
    want = os.environ.get("LAB_CN_MODEL_CHANNELS")
    want = int(want) if want else _sd1_model_channels(sd_model if sd_model is not None else sd_models.model_data.sd_model)
    if not want:
        return
    for mod in _guess_modules():
        cfg = mod.controlnet_default_config
        if cfg.get("model_channels") != want:
            print(f"{_TAG} sd-webui-controlnet SD1 config: model_channels {cfg.get('model_channels')} -> {want}", flush=True)
            cfg["model_channels"] = want


script_callbacks.on_model_loaded(patch, name="lab-cn-tiny-config")
script_callbacks.on_app_started(lambda *_: patch(), name="lab-cn-tiny-config")
