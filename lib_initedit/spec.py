"""The one data model: what the UI, the API, infotext and X/Y/Z all speak.

Boxes are fractions of the image (x0, y0, x1, y1), so a spec survives a size change.
Every error names the field and the value, e.g. ``layout[1].box: x1 (0.2) must be greater than x0 (0.5)``.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

VARY_MODES = ("seed", "reroll")
METHODS = ("swap", "rebuild")
LAYER_CHOICES = ("paper", "level")
# guidance's unit: "share" = the phrase's attention share in its box, in % (the same on every model);
# "logits" = a fixed score bias (what infotexts written before guidance_units meant)
GUIDANCE_UNITS = ("share", "logits")
MAX_SEED = 2**32 - 1
SEED_SPAN = MAX_SEED + 1  # seeds wrap around modulo this (vary "reroll", X/Y/Z seed axis)
RANDOM_SEED_LIMIT = 4294967294  # -1 resolves to randrange(this), as the WebUI resolves its own seed
MAX_ROUNDS = 8
MAX_CANDIDATES = 8  # layout: noises probed for candidate pooling (each one more UNet probe)
MAX_REGIONS = 16  # reroll regions per spec
MAX_BOXES = 16  # layout boxes per spec
MAX_MASK_PIXELS = 4096 * 4096  # a mask PNG larger than this is refused before it is decoded
MAX_GUIDANCE = 99.0  # guidance in "share" units: the phrase's share of the attention in its box, %
MAX_GUIDANCE_LOGITS = 20.0  # guidance in "logits" units: additive score bias
DEFAULT_GUIDANCE_LOGITS = 8.0  # guidance in "logits" units when the spec gives none

# (lo, hi) of every number field: parse_spec checks these, the UI's sliders show them (webui/args.spec_facts).
LIMITS = {
    "seed": (-1, MAX_SEED), "strength": (0.0, 1.0), "feather": (0.0, 0.5),  # per region
    "rounds": (1, MAX_ROUNDS), "candidates": (1, MAX_CANDIDATES), "keep": (0.0, 1.0), "keep_band": (0.0, 0.25),
    "guidance": (0.0, MAX_GUIDANCE), "guidance_steps": (0.0, 1.0), "guidance_core": (0.1, 1.0),
}

# Infotext keys: the resolved spec, a refusal, and what was skipped.
INFOTEXT_KEY = "InitEdit"
ERROR_KEY = "InitEdit error"
NOTE_KEY = "InitEdit note"

# What a spec written before a field existed meant by leaving it out. Infotexts are read with these
# (``parse_infotext``), so an old image reproduces exactly although the field's default has changed;
# ``to_dict`` always writes these fields so that new infotexts never rely on a default.
LEGACY_VALUES = {"keep": 0.0, "keep_band": 0.0, "guidance": 0.0, "guidance_steps": 0.3, "guidance_core": 1.0,
                 "guidance_units": "logits"}
# Fields written whenever this list is not empty, so an infotext never depends on a default that may change.
_SECTION_OF = {"keep": "reroll", "keep_band": "reroll", "guidance": "layout", "guidance_steps": "layout",
               "guidance_core": "layout", "guidance_units": "layout"}


class SpecError(ValueError):
    """Bad input; the message names the field."""


Box = tuple  # (x0, y0, x1, y1) floats in 0..1


@dataclass(frozen=True)
class RerollRegion:
    box: Box | None = None
    mask: str | None = None  # base64 PNG, white = region
    seed: int = -1  # -1: resolved to a random seed at generation time
    strength: float = 1.0
    feather: float = 0.0

    def to_dict(self) -> dict:
        d: dict[str, Any] = {}
        if self.box is not None:
            d["box"] = list(self.box)
        if self.mask is not None:
            d["mask"] = self.mask
        d["seed"] = self.seed
        d["strength"] = self.strength
        d["feather"] = self.feather
        return d


@dataclass(frozen=True)
class LayoutBox:
    phrase: str
    box: Box

    def to_dict(self) -> dict:
        return {"phrase": self.phrase, "box": list(self.box)}


@dataclass(frozen=True)
class InitEditSpec:
    reroll: tuple[RerollRegion, ...] = ()
    vary: str = "seed"
    layout: tuple[LayoutBox, ...] = ()
    rounds: int = 1
    hires: bool = False
    method: str = "swap"
    layers: str = "level"
    heatmaps: bool = False
    keep: float = 0.8  # fraction of the steps the outside of the regions follows the base image (docs/reroll-keep.md)
    keep_band: float = 0.0  # width of the band around the regions (fraction of the shorter side) released gradually
    # during the kept steps, nearest first; beyond it the outside follows for all of them (0: no band)
    guidance: float = 90.0  # layout: in its box each phrase gets at least this % of the attention, outside it
    # keeps at most (100 - this) % of its own; 0 = off (guidance_units "logits": a score bias +- this instead)
    guidance_steps: float = 0.5  # layout: fraction of the steps that are guided (toy world: docs/layout.md)
    candidates: int = 1  # layout: probe this many noises (the seed's and K-1 derived ones), fill boxes from all
    guidance_core: float = 0.7  # layout: a box larger than 16 % of the image pulls its phrase in only in its
    # central fraction (per side); the rest of the box is neutral (1 = the whole box; less leak, docs/layout.md)
    guidance_units: str = "share"  # layout: the unit of guidance, one of GUIDANCE_UNITS

    @property
    def is_empty(self) -> bool:
        return not self.reroll and not self.layout

    def replace(self, **changes) -> "InitEditSpec":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Compact form: values equal to the default are left out; parse_spec(to_dict()) == self."""
        d: dict[str, Any] = {}
        if self.reroll:
            d["reroll"] = [r.to_dict() for r in self.reroll]
        if self.layout:
            d["layout"] = [b.to_dict() for b in self.layout]
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            pinned = f.name in _SECTION_OF and bool(getattr(self, _SECTION_OF[f.name]))
            if f.name not in ("reroll", "layout") and (value != f.default or pinned):
                d[f.name] = value
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


_TOP_KEYS = {f.name for f in dataclasses.fields(InitEditSpec)}
_REROLL_KEYS = {f.name for f in dataclasses.fields(RerollRegion)}
_LAYOUT_KEYS = {f.name for f in dataclasses.fields(LayoutBox)}


def parse_spec(value: Any) -> InitEditSpec:
    """Parse a dict or JSON text into a validated spec. Empty text or None give the empty spec."""
    if value is None:
        return InitEditSpec()
    if isinstance(value, InitEditSpec):
        return value
    if isinstance(value, (str, bytes)):
        text = value.decode() if isinstance(value, bytes) else value
        if not text.strip():
            return InitEditSpec()
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise SpecError(f"spec: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    if not isinstance(value, dict):
        raise SpecError(f"spec: must be an object, got {_show(value)}")
    _no_unknown_keys(value, _TOP_KEYS, "spec")
    regions = _list(value, "reroll", MAX_REGIONS)
    default = InitEditSpec()
    units = _choice(value.get("guidance_units", default.guidance_units), GUIDANCE_UNITS, "guidance_units")
    return InitEditSpec(
        reroll=tuple(_parse_region(r, f"reroll[{i}]") for i, r in enumerate(regions)),
        vary=_choice(value.get("vary", "seed"), VARY_MODES, "vary"),
        layout=_parse_layout(_list(value, "layout")),
        rounds=_int(value.get("rounds", 1), "rounds", *LIMITS["rounds"]),
        hires=_bool(value.get("hires", False), "hires"),
        method=_choice(value.get("method", "swap"), METHODS, "method"),
        layers=_choice(value.get("layers", "level"), LAYER_CHOICES, "layers"),
        heatmaps=_bool(value.get("heatmaps", False), "heatmaps"),
        keep=_float(value.get("keep", default.keep), "keep", *LIMITS["keep"]),
        keep_band=_float(value.get("keep_band", default.keep_band), "keep_band", *LIMITS["keep_band"]),
        guidance=_float(value.get("guidance", default.guidance if units == "share" else DEFAULT_GUIDANCE_LOGITS),
                        "guidance",
                        *(LIMITS["guidance"] if units == "share" else (0.0, MAX_GUIDANCE_LOGITS))),
        guidance_steps=_float(value.get("guidance_steps", default.guidance_steps), "guidance_steps",
                              *LIMITS["guidance_steps"]),
        candidates=_int(value.get("candidates", default.candidates), "candidates", *LIMITS["candidates"]),
        guidance_core=_float(value.get("guidance_core", default.guidance_core), "guidance_core",
                             *LIMITS["guidance_core"]),
        guidance_units=units,
    )


def parse_infotext(value: Any) -> InitEditSpec:
    """Parse the spec stored in an image's infotext: fields it lacks take their LEGACY_VALUES."""
    if isinstance(value, (str, bytes)):
        text = value.decode() if isinstance(value, bytes) else value
        try:
            value = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as e:
            raise SpecError(f"spec: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    if isinstance(value, dict):  # legacy values only where their section is there: the round trip stays exact
        value = {**{k: v for k, v in LEGACY_VALUES.items() if value.get(_SECTION_OF.get(k, ""))}, **value}
    return parse_spec(value)


def _parse_region(value: Any, where: str) -> RerollRegion:
    if not isinstance(value, dict):
        raise SpecError(f"{where}: must be an object, got {_show(value)}")
    _no_unknown_keys(value, _REROLL_KEYS, where)
    has_box, has_mask = value.get("box") is not None, value.get("mask") is not None
    if has_box == has_mask:
        raise SpecError(f"{where}: give exactly one of 'box' or 'mask'")
    box = _box(value["box"], f"{where}.box") if has_box else None
    mask = _mask(value["mask"], f"{where}.mask") if has_mask else None
    return RerollRegion(
        box=box,
        mask=mask,
        seed=_int(value.get("seed", -1), f"{where}.seed", *LIMITS["seed"]),
        strength=_float(value.get("strength", 1.0), f"{where}.strength", *LIMITS["strength"]),
        feather=_float(value.get("feather", 0.0), f"{where}.feather", *LIMITS["feather"]),
    )


def _parse_layout(items: list) -> tuple[LayoutBox, ...]:
    boxes = []
    if len(items) > MAX_BOXES:
        raise SpecError(f"layout: {len(items)} boxes; at most {MAX_BOXES}")
    for i, value in enumerate(items):
        where = f"layout[{i}]"
        if not isinstance(value, dict):
            raise SpecError(f"{where}: must be an object, got {_show(value)}")
        _no_unknown_keys(value, _LAYOUT_KEYS, where)
        phrase = value.get("phrase")
        if not isinstance(phrase, str) or not phrase.strip():
            raise SpecError(f"{where}.phrase: must be a non-empty text, got {_show(phrase)}")
        if "box" not in value:
            raise SpecError(f"{where}.box: missing")
        boxes.append(LayoutBox(phrase=phrase.strip(), box=_box(value["box"], f"{where}.box")))
    return tuple(boxes)


def _list(d: dict, key: str, most: int | None = None) -> list:
    v = d.get(key, [])
    if v is None:
        return []
    if not isinstance(v, list):
        raise SpecError(f"{key}: must be a list, got {_show(v)}")
    if most is not None and len(v) > most:
        raise SpecError(f"{key}: {len(v)} items; at most {most}")
    return v


def _no_unknown_keys(d: dict, allowed: set, where: str) -> None:
    unknown = sorted(str(k) for k in d if k not in allowed)
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def _box(value: Any, where: str) -> Box:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise SpecError(f"{where}: must be [x0, y0, x1, y1], got {_show(value)}")
    names = ("x0", "y0", "x1", "y1")
    x0, y0, x1, y1 = (_float(v, f"{where}: {n}", 0.0, 1.0) for v, n in zip(value, names))
    if x1 <= x0:
        raise SpecError(f"{where}: x1 ({x1:g}) must be greater than x0 ({x0:g})")
    if y1 <= y0:
        raise SpecError(f"{where}: y1 ({y1:g}) must be greater than y0 ({y0:g})")
    return (x0, y0, x1, y1)


def _mask(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise SpecError(f"{where}: must be a base64 PNG text, got {_show(value)}")
    payload = value.split(",", 1)[1] if value.startswith("data:") else value
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise SpecError(f"{where}: not valid base64") from None
    if not raw.startswith(b"\x89PNG\r\n\x1a\n") or len(raw) < 24:
        raise SpecError(f"{where}: not a PNG image")
    width, height = int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")  # IHDR, before decoding
    if width * height > MAX_MASK_PIXELS:
        raise SpecError(f"{where}: {width}x{height} pixels; at most {MAX_MASK_PIXELS} pixels (e.g. 4096x4096)")
    if not _has_region_pixel(raw, where):
        raise SpecError(f"{where}: has no white pixel, so it selects nothing")
    return payload


def _has_region_pixel(raw: bytes, where: str) -> bool:
    """Whether the mask selects anything (gray > 0 where alpha > 0), read as noise.mask_from_png reads it."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(raw))
        img.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise SpecError(f"{where}: cannot be read as an image ({e})") from None
    gray = img.convert("L")
    if "A" in img.getbands():
        alpha = img.getchannel("A").point(lambda a: 255 if a else 0)
        gray = Image.composite(gray, Image.new("L", gray.size, 0), alpha)
    return gray.getbbox() is not None


def _float(value: Any, where: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"{where}: must be a number, got {_show(value)}")
    v = float(value)
    if not math.isfinite(v) or not lo <= v <= hi:
        raise SpecError(f"{where}: {_show(value)} is outside {lo:g}..{hi:g}")
    return v


def _int(value: Any, where: str, lo: int, hi: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{where}: must be a whole number, got {_show(value)}")
    if not lo <= value <= hi:
        raise SpecError(f"{where}: {value} is outside {lo}..{hi}")
    return value


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"{where}: must be true or false, got {_show(value)}")
    return value


def _choice(value: Any, choices: tuple, where: str) -> str:
    if value not in choices:
        raise SpecError(f"{where}: {_show(value)} is not one of {', '.join(choices)}")
    return value


def _show(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
