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
from dataclasses import dataclass, field
from typing import Any

VARY_MODES = ("seed", "reroll")
METHODS = ("swap", "rebuild")
LAYER_CHOICES = ("paper", "level")
# guidance's unit: "share" = the phrase's attention share in its box, in % (the same on every model);
# "logits" = a fixed score bias (what infotexts written before guidance_units meant)
GUIDANCE_UNITS = ("share", "logits")
# what keep and guidance_steps are fractions of: "steps" = of the sampler's steps, on the schedule (the same on
# every sampler); "calls" = of the denoiser calls (what infotexts written before fraction_of meant: on
# second-order samplers, which call the model twice a step, a share of the calls)
FRACTION_OF = ("steps", "calls")
KEEP_RELEASES = ("soft", "hard")
# which cross-attention layers guidance steers (layout/guidance.select_guided_layers): "coarse" = those at the
# probe's resolution and coarser; "all" = every one (what infotexts written before this field meant)
GUIDANCE_LAYERS = ("coarse", "all")
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

# Infotext keys: the resolved spec, a refusal, and what was skipped.
INFOTEXT_KEY = "InitEdit"
ERROR_KEY = "InitEdit error"
NOTE_KEY = "InitEdit note"


class SpecError(ValueError):
    """Bad input; the message names the field."""


_NO_LEGACY = object()


@dataclass(frozen=True)
class Fact:
    """What everyone who reads or writes a field knows about it, said once, on the field itself: its range (numbers)
    or choices (text), what a spec written before the field existed meant by leaving it out (``legacy``:
    infotexts are read with it, so an old image reproduces although the default has changed), and the lists
    (``section``: one or a tuple of them) whenever one of which is not empty the field is written, so that an
    infotext never depends on a default that may change. ``parse_spec``, ``to_dict``, ``parse_infotext``, the
    UI's facts (``webui/args.spec_facts``) and the JS editor all derive from these."""

    limits: tuple | None = None
    choices: tuple | None = None
    legacy: Any = _NO_LEGACY
    section: str | tuple | None = None


def fact(default, **facts) -> Any:
    """A dataclass field with its ``Fact``."""
    return field(default=default, metadata={"fact": Fact(**facts)})


Box = tuple  # (x0, y0, x1, y1) floats in 0..1


@dataclass(frozen=True)
class RerollRegion:
    box: Box | None = None
    mask: str | None = None  # base64 PNG, white = region
    seed: int = fact(-1, limits=(-1, MAX_SEED))  # -1: resolved to a random seed at generation time
    strength: float = fact(1.0, limits=(0.0, 1.0))
    feather: float = fact(0.0, limits=(0.0, 0.5))

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
    vary: str = fact("seed", choices=VARY_MODES)
    layout: tuple[LayoutBox, ...] = ()
    rounds: int = fact(1, limits=(1, MAX_ROUNDS))
    hires: bool = fact(False)
    method: str = fact("swap", choices=METHODS)
    layers: str = fact("level", choices=LAYER_CHOICES)
    heatmaps: bool = fact(False)
    # fraction of the sampler's steps the outside of the regions, beyond the band, follows the base image
    keep: float = fact(1.0, limits=(0.0, 1.0), legacy=0.0, section="reroll")
    # width of the band around the regions (fraction of the shorter side) released gradually during the kept
    # calls, nearest first (0: no band, a hard edge at keep 1); toy-world tables: docs/reroll-keep.md
    keep_band: float = fact(0.12, limits=(0.0, 0.25), legacy=0.0, section="reroll")
    # how the band is released (reroll/release.py RELEASES): "soft" = before its release an element already takes
    # part of the new prediction, the nearer the more; "hard" = all at its release (what infotexts written before
    # this field meant)
    keep_release: str = fact("soft", choices=KEEP_RELEASES, legacy="hard", section="reroll")
    # layout: in its box each phrase gets at least this % of the attention, outside it keeps at most (100 - this) %
    # of its own; 0 = off (guidance_units "logits": a score bias +- this instead)
    guidance: float = fact(90.0, limits=(0.0, MAX_GUIDANCE), legacy=0.0, section="layout")
    # layout: fraction of the steps that are guided (toy world: docs/layout.md)
    guidance_steps: float = fact(0.5, limits=(0.0, 1.0), legacy=0.3, section="layout")
    # layout: probe this many noises (the seed's and K-1 derived ones), fill boxes from all
    candidates: int = fact(1, limits=(1, MAX_CANDIDATES))
    # layout: a box larger than 16 % of the image pulls its phrase in only in its central fraction (per side);
    # the rest of the box is neutral (1 = the whole box; less leak, docs/layout.md)
    guidance_core: float = fact(0.7, limits=(0.1, 1.0), legacy=1.0, section="layout")
    # layout: the unit of guidance ("logits": what infotexts written before this field meant)
    guidance_units: str = fact("share", choices=GUIDANCE_UNITS, legacy="logits", section="layout")
    # keep and guidance_steps are fractions of the sampler's steps ("calls": what infotexts written before this
    # field meant)
    fraction_of: str = fact("steps", choices=FRACTION_OF, legacy="calls", section=("reroll", "layout"))
    # layout: the cross-attention layers guided ("all": what infotexts written before this field meant)
    guidance_layers: str = fact("coarse", choices=GUIDANCE_LAYERS, legacy="all", section="layout")

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
            pinned = any(getattr(self, section) for section in SECTION_OF.get(f.name, ()))
            if f.name not in ("reroll", "layout") and (value != f.default or pinned):
                d[f.name] = value
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


def facts_of(cls) -> dict[str, Fact]:
    """Field name -> Fact of a spec dataclass, in field order."""
    return {f.name: f.metadata["fact"] for f in dataclasses.fields(cls) if "fact" in f.metadata}


SPEC_FACTS = facts_of(InitEditSpec)
REGION_FACTS = facts_of(RerollRegion)
DEFAULTS = {f.name: f.default for f in dataclasses.fields(InitEditSpec) if f.name in SPEC_FACTS}
REGION_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RerollRegion) if f.name in REGION_FACTS}
# (lo, hi) of every number field, per region and per spec
LIMITS = {name: f.limits for name, f in {**REGION_FACTS, **SPEC_FACTS}.items() if f.limits is not None}
LEGACY_VALUES = {name: f.legacy for name, f in SPEC_FACTS.items() if f.legacy is not _NO_LEGACY}
# field -> the lists whose presence pins it (it is written whenever one of them is)
SECTION_OF = {name: (f.section,) if isinstance(f.section, str) else tuple(f.section)
              for name, f in SPEC_FACTS.items() if f.section is not None}
# guidance's default and range in the "logits" unit (the fields' own facts are the "share" unit's)
GUIDANCE_IN_LOGITS = (DEFAULT_GUIDANCE_LOGITS, (0.0, MAX_GUIDANCE_LOGITS))

_TOP_KEYS = {f.name for f in dataclasses.fields(InitEditSpec)}
_REROLL_KEYS = {f.name for f in dataclasses.fields(RerollRegion)}
_LAYOUT_KEYS = {f.name for f in dataclasses.fields(LayoutBox)}


def wrap_seed(seed: int) -> int:
    """A seed past the largest wraps around (vary "reroll", the X/Y/Z seed axis, candidate seeds)."""
    return int(seed) % SEED_SPAN


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
        raise SpecError(f"spec: must be an object, got {show_value(value)}")
    _no_unknown_keys(value, _TOP_KEYS, "spec")
    regions = _list(value, "reroll", MAX_REGIONS)
    fields: dict[str, Any] = {}
    for name in sorted(SPEC_FACTS, key=lambda n: n != "guidance_units"):  # the unit first: it sets guidance's range
        facts, default = SPEC_FACTS[name], DEFAULTS[name]
        if name == "guidance" and fields.get("guidance_units") == "logits":
            default, limits = GUIDANCE_IN_LOGITS
            facts = dataclasses.replace(facts, limits=limits)
        fields[name] = _parse_value(value.get(name, default), name, default, facts)
    return InitEditSpec(reroll=tuple(_parse_region(r, f"reroll[{i}]") for i, r in enumerate(regions)),
                        layout=_parse_layout(_list(value, "layout")), **fields)


def parse_infotext(value: Any) -> InitEditSpec:
    """Parse the spec stored in an image's infotext: fields it lacks take their LEGACY_VALUES."""
    if isinstance(value, (str, bytes)):
        text = value.decode() if isinstance(value, bytes) else value
        try:
            value = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as e:
            raise SpecError(f"spec: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    if isinstance(value, dict):  # legacy values only where their section is there: the round trip stays exact
        value = {**{k: v for k, v in LEGACY_VALUES.items() if any(value.get(s) for s in SECTION_OF.get(k, ()))},
                 **value}
    return parse_spec(value)


def _parse_region(value: Any, where: str) -> RerollRegion:
    if not isinstance(value, dict):
        raise SpecError(f"{where}: must be an object, got {show_value(value)}")
    _no_unknown_keys(value, _REROLL_KEYS, where)
    has_box, has_mask = value.get("box") is not None, value.get("mask") is not None
    if has_box == has_mask:
        raise SpecError(f"{where}: give exactly one of 'box' or 'mask'")
    box = _box(value["box"], f"{where}.box") if has_box else None
    mask = _mask(value["mask"], f"{where}.mask") if has_mask else None
    return RerollRegion(box=box, mask=mask, **{
        name: _parse_value(value.get(name, REGION_DEFAULTS[name]), f"{where}.{name}", REGION_DEFAULTS[name], facts)
        for name, facts in REGION_FACTS.items()})


def _parse_layout(items: list) -> tuple[LayoutBox, ...]:
    boxes = []
    if len(items) > MAX_BOXES:
        raise SpecError(f"layout: {len(items)} boxes; at most {MAX_BOXES}")
    for i, value in enumerate(items):
        where = f"layout[{i}]"
        if not isinstance(value, dict):
            raise SpecError(f"{where}: must be an object, got {show_value(value)}")
        _no_unknown_keys(value, _LAYOUT_KEYS, where)
        phrase = value.get("phrase")
        if not isinstance(phrase, str) or not phrase.strip():
            raise SpecError(f"{where}.phrase: must be a non-empty text, got {show_value(phrase)}")
        if "box" not in value:
            raise SpecError(f"{where}.box: missing")
        boxes.append(LayoutBox(phrase=phrase.strip(), box=_box(value["box"], f"{where}.box")))
    return tuple(boxes)


def _list(d: dict, key: str, most: int | None = None) -> list:
    v = d.get(key, [])
    if v is None:
        return []
    if not isinstance(v, list):
        raise SpecError(f"{key}: must be a list, got {show_value(v)}")
    if most is not None and len(v) > most:
        raise SpecError(f"{key}: {len(v)} items; at most {most}")
    return v


def _no_unknown_keys(d: dict, allowed: set, where: str) -> None:
    unknown = sorted(str(k) for k in d if k not in allowed)
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def _box(value: Any, where: str) -> Box:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise SpecError(f"{where}: must be [x0, y0, x1, y1], got {show_value(value)}")
    names = ("x0", "y0", "x1", "y1")
    x0, y0, x1, y1 = (_float(v, f"{where}: {n}", 0.0, 1.0) for v, n in zip(value, names))
    if x1 <= x0:
        raise SpecError(f"{where}: x1 ({x1:g}) must be greater than x0 ({x0:g})")
    if y1 <= y0:
        raise SpecError(f"{where}: y1 ({y1:g}) must be greater than y0 ({y0:g})")
    return (x0, y0, x1, y1)


def _mask(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise SpecError(f"{where}: must be a base64 PNG text, got {show_value(value)}")
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


def _parse_value(value: Any, where: str, default: Any, facts: Fact) -> Any:
    """One scalar field, checked as its default's type and its facts say."""
    if facts.choices is not None:
        return _choice(value, facts.choices, where)
    if isinstance(default, bool):
        return _bool(value, where)
    if isinstance(default, int):
        return _int(value, where, *facts.limits)
    return _float(value, where, *facts.limits)


def _float(value: Any, where: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"{where}: must be a number, got {show_value(value)}")
    v = float(value)
    if not math.isfinite(v) or not lo <= v <= hi:
        raise SpecError(f"{where}: {show_value(value)} is outside {lo:g}..{hi:g}")
    return v


def _int(value: Any, where: str, lo: int, hi: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{where}: must be a whole number, got {show_value(value)}")
    if not lo <= value <= hi:
        raise SpecError(f"{where}: {value} is outside {lo}..{hi}")
    return value


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"{where}: must be true or false, got {show_value(value)}")
    return value


def _choice(value: Any, choices: tuple, where: str) -> str:
    if value not in choices:
        raise SpecError(f"{where}: {show_value(value)} is not one of {', '.join(choices)}")
    return value


def show_value(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
