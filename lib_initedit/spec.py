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
MAX_SEED = 2**32 - 1
MAX_ROUNDS = 8


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
            if f.name not in ("reroll", "layout") and getattr(self, f.name) != f.default:
                d[f.name] = getattr(self, f.name)
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
    return InitEditSpec(
        reroll=tuple(_parse_region(r, f"reroll[{i}]") for i, r in enumerate(_list(value, "reroll"))),
        vary=_choice(value.get("vary", "seed"), VARY_MODES, "vary"),
        layout=_parse_layout(_list(value, "layout")),
        rounds=_int(value.get("rounds", 1), "rounds", 1, MAX_ROUNDS),
        hires=_bool(value.get("hires", False), "hires"),
        method=_choice(value.get("method", "swap"), METHODS, "method"),
        layers=_choice(value.get("layers", "level"), LAYER_CHOICES, "layers"),
        heatmaps=_bool(value.get("heatmaps", False), "heatmaps"),
    )


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
        seed=_int(value.get("seed", -1), f"{where}.seed", -1, MAX_SEED),
        strength=_float(value.get("strength", 1.0), f"{where}.strength", 0.0, 1.0),
        feather=_float(value.get("feather", 0.0), f"{where}.feather", 0.0, 0.5),
    )


def _parse_layout(items: list) -> tuple[LayoutBox, ...]:
    boxes = []
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


def _list(d: dict, key: str) -> list:
    v = d.get(key, [])
    if v is None:
        return []
    if not isinstance(v, list):
        raise SpecError(f"{key}: must be a list, got {_show(v)}")
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
    if not raw.startswith(b"\x89PNG\r\n\x1a\n"):
        raise SpecError(f"{where}: not a PNG image")
    return payload


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
