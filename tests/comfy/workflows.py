"""API-format graphs for the ComfyUI tier (built by hand; node ids are strings)."""
from __future__ import annotations

import json
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[2]

CKPT = "tiny-comfy-sd15.safetensors"
PROMPT = "a cat and a red car"


def base(seed=1, sampler="euler", steps=6, size=128, batch=1, scheduler="normal", cfg=5.0, prompt=PROMPT):
    """Checkpoint -> prompts -> empty latent -> KSampler (node "5") -> decode -> SaveImage "7"; SaveLatent "8"."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CKPT}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": batch}},
        "5": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0],
                                                   "latent_image": ["4", 0], "seed": seed, "steps": steps, "cfg": cfg,
                                                   "sampler_name": sampler, "scheduler": scheduler, "denoise": 1.0}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "initedit_e2e"}},
        "8": {"class_type": "SaveLatent", "inputs": {"samples": ["5", 0], "filename_prefix": "latents/initedit_e2e"}},
    }


def with_reroll(graph: dict, spec: dict | str, mask_node: str | None = None) -> dict:
    """The KSampler's model through an InitEdit Region Reroll node "20"."""
    g = json.loads(json.dumps(graph))
    inputs = {"model": ["1", 0], "spec": spec if isinstance(spec, str) else json.dumps(spec)}
    if mask_node:
        inputs["mask"] = [mask_node, 0]
    g["20"] = {"class_type": "InitEditRegionReroll", "inputs": inputs}
    g["5"]["inputs"]["model"] = ["20", 0]
    return g


def with_layout(graph: dict, spec: dict | str, heatmaps: bool = False) -> dict:
    """The KSampler's model and positive through an InitEdit Layout node "30" (and Heatmaps "31" -> Save "32")."""
    g = json.loads(json.dumps(graph))
    g["30"] = {"class_type": "InitEditLayout", "inputs": {"model": ["1", 0], "clip": ["1", 1],
                                                         "text": g["2"]["inputs"]["text"],
                                                         "spec": spec if isinstance(spec, str) else json.dumps(spec)}}
    g["5"]["inputs"]["model"] = ["30", 0]
    g["5"]["inputs"]["positive"] = ["30", 1]
    if heatmaps:
        g["31"] = {"class_type": "InitEditHeatmaps", "inputs": {"model": ["30", 0], "samples": ["5", 0]}}
        g["32"] = {"class_type": "SaveImage", "inputs": {"images": ["31", 0], "filename_prefix": "initedit_heatmaps"}}
    return g


def custom_advanced(graph: dict, model=("1", 0), sampler="euler", noise_seed=1) -> dict:
    """Node "5" replaced by SamplerCustomAdvanced (RandomNoise, CFGGuider, KSamplerSelect, BasicScheduler)."""
    g = json.loads(json.dumps(graph))
    steps = g["5"]["inputs"]["steps"]
    cfg = g["5"]["inputs"]["cfg"]
    g["40"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": noise_seed}}
    g["41"] = {"class_type": "CFGGuider", "inputs": {"model": list(model), "positive": ["2", 0], "negative": ["3", 0],
                                                    "cfg": cfg}}
    g["42"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": sampler}}
    g["43"] = {"class_type": "BasicScheduler", "inputs": {"model": list(model), "scheduler": "normal", "steps": steps,
                                                         "denoise": 1.0}}
    g["5"] = {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["40", 0], "guider": ["41", 0],
                                                               "sampler": ["42", 0], "sigmas": ["43", 0],
                                                               "latent_image": ["4", 0]}}
    return g
