"""The ComfyUI nodes of InitEdit (category "InitEdit"). The spec widget holds the same JSON as the WebUI's
spec textbox (``lib_initedit.spec``); it is kept in the workflow, so a saved workflow reproduces its image.

- InitEdit Region Reroll: MODEL -> MODEL. Regions from the spec's ``reroll`` boxes and/or a MASK (ComfyUI's
  mask editor), ``keep``, ``vary``. Works with the stock KSampler and SamplerCustomAdvanced.
- InitEdit Layout: MODEL, CLIP, prompt -> MODEL, CONDITIONING. Boxes labelled with phrases of the prompt
  (probe, block move, guidance); the node encodes the prompt itself so the phrases are found in exactly the
  conditioning the sampler gets. Its spec may also carry ``reroll`` regions.
- InitEdit Heatmaps: MODEL (from InitEdit Layout, spec ``"heatmaps": true``) and the sampler's LATENT -> IMAGE.
"""
from __future__ import annotations

import json

import torch

from ..spec import MAX_SEED, InitEditSpec, SpecError, parse_spec
from . import host

CATEGORY = "InitEdit"

DEFAULT_REROLL = json.dumps({"reroll": [{"box": [0.25, 0.25, 0.75, 0.75], "seed": 1, "strength": 1.0,
                                         "feather": 0.05}]})  # keep, vary ...: the spec's defaults
DEFAULT_LAYOUT = json.dumps({"layout": [{"phrase": "cat", "box": [0.0, 0.25, 0.5, 0.75]},
                                        {"phrase": "red car", "box": [0.5, 0.25, 1.0, 0.75]}]})


class InitEditError(ValueError):
    """A node's bad input, message naming the field (ComfyUI shows it on the node)."""


def _parse(spec_text) -> InitEditSpec:
    try:
        return parse_spec(spec_text)
    except SpecError as e:
        raise InitEditError(f"InitEdit spec: {e}") from None


def _reroll_spec(spec_text, mask=None, mask_seed=-1, mask_strength=1.0, mask_feather=0.0) -> InitEditSpec:
    """The Region Reroll node's spec: the JSON, plus the MASK input as one more region (validated as such)."""
    spec = _parse(spec_text)
    if spec.layout:
        raise InitEditError("InitEdit spec: layout: boxes need the prompt; use the InitEdit Layout node")
    if mask is not None:
        data = spec.to_dict()
        data.setdefault("reroll", []).append({"mask": host.mask_to_png(mask), "seed": int(mask_seed),
                                              "strength": float(mask_strength), "feather": float(mask_feather)})
        spec = _parse(data)
    if not spec.reroll:
        raise InitEditError("InitEdit spec: reroll: no region (give boxes in the spec or connect a mask)")
    return spec


class RegionReroll:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL",),
                "spec": ("STRING", {"multiline": True, "default": DEFAULT_REROLL,
                                    "tooltip": "InitEdit spec JSON: reroll regions (boxes as fractions of the "
                                               "image), keep, vary. The same format as in the WebUI."}),
            },
            "optional": {
                "mask": ("MASK", {"tooltip": "one more region: white = rerolled (e.g. from the mask editor)"}),
                "mask_seed": ("INT", {"default": 1, "min": -1, "max": MAX_SEED, "control_after_generate": False}),
                "mask_strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
                "mask_feather": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 0.5, "step": 0.01}),
            },
        }

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "apply"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Re-randomize the initial noise only inside regions (same seed elsewhere); keep holds the rest "
                   "of the image on the one without the reroll. Use the output MODEL in KSampler or a guider.")

    @classmethod
    def VALIDATE_INPUTS(cls, spec=None):
        if not isinstance(spec, str):  # linked from another node: checked when the node runs
            return True
        try:
            parsed = _parse(spec)
            if parsed.layout:
                return "InitEdit spec: layout: boxes need the prompt; use the InitEdit Layout node"
        except InitEditError as e:
            return str(e)
        return True

    def apply(self, model, spec, mask=None, mask_seed=1, mask_strength=1.0, mask_feather=0.0):
        parsed = _reroll_spec(spec, mask, mask_seed, mask_strength, mask_feather)
        return (host.InitEditPatch(parsed).apply(model),)


class Layout:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL",),
                "clip": ("CLIP",),
                "text": ("STRING", {"multiline": True, "default": "a cat and a red car",
                                    "tooltip": "the positive prompt; the boxes' phrases are found in it"}),
                "spec": ("STRING", {"multiline": True, "default": DEFAULT_LAYOUT,
                                    "tooltip": "InitEdit spec JSON: layout boxes with phrases of the prompt, "
                                               "guidance, rounds, heatmaps (and optional reroll regions)."}),
            },
        }

    RETURN_TYPES = ("MODEL", "CONDITIONING")
    RETURN_NAMES = ("model", "positive")
    FUNCTION = "apply"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Put each phrase of the prompt in its box: a probe reads the phrases' attention on the initial "
                   "noise and moves noise blocks into the boxes; guidance keeps them there in the first steps.")

    @classmethod
    def VALIDATE_INPUTS(cls, spec=None):
        if not isinstance(spec, str):
            return True
        try:
            parsed = _parse(spec)
        except InitEditError as e:
            return str(e)
        return True if parsed.layout else "InitEdit spec: layout: no box (give boxes with phrases)"

    def apply(self, model, clip, text, spec):
        parsed = _parse(spec)
        if not parsed.layout:
            raise InitEditError("InitEdit spec: layout: no box (give boxes with phrases)")
        try:
            positions = host.phrase_positions(clip, text, [b.phrase for b in parsed.layout])
        except SpecError as e:
            raise InitEditError(f"InitEdit spec: {e}") from None
        tokens = clip.tokenize(text)
        positive = clip.encode_from_tokens_scheduled(tokens)
        return (host.InitEditPatch(parsed, positions).apply(model), positive)


class Heatmaps:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "samples": ("LATENT", {"tooltip": "the sampler's output: the "
                                                                          "heatmaps are read after it ran"})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "render"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Each layout phrase's attention on the initial noise before and after the edit, and at the first "
                   "step after guidance, boxes drawn.")

    def render(self, model, samples):
        patch = getattr(model, "model_options", {}).get(host.OPTIONS_KEY)
        if patch is None:
            raise InitEditError("InitEdit Heatmaps: model: connect the MODEL output of an InitEdit Layout node")
        if not patch.spec.heatmaps:
            raise InitEditError('InitEdit Heatmaps: spec: set "heatmaps": true in the InitEdit Layout node\'s spec')
        if not patch.heatmaps:
            raise InitEditError("InitEdit Heatmaps: samples: no layout ran with this model yet (connect the "
                                "sampler's output that used it)")
        import numpy as np

        sheets = patch.heatmaps
        w = max(s.width for s in sheets)
        h = max(s.height for s in sheets)
        out = torch.zeros(len(sheets), h, w, 3)
        for i, sheet in enumerate(sheets):
            arr = torch.from_numpy(np.asarray(sheet.convert("RGB"), dtype=np.float32) / 255.0)
            out[i, :arr.shape[0], :arr.shape[1]] = arr
        return (out,)


NODE_CLASS_MAPPINGS = {
    "InitEditRegionReroll": RegionReroll,
    "InitEditLayout": Layout,
    "InitEditHeatmaps": Heatmaps,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "InitEditRegionReroll": "InitEdit Region Reroll",
    "InitEditLayout": "InitEdit Layout",
    "InitEditHeatmaps": "InitEdit Heatmaps",
}
