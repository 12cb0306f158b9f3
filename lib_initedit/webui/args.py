"""Script args (UI positional or API dict) and X/Y/Z overrides -> one validated spec.

One path: the spec's dict, edited by the X/Y/Z axes, then ``parse_spec`` once. No ``modules.*`` here: this is
plain data handling, tested without a WebUI (and used by the API's refusal of bad requests, api.py).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from .. import spec as S
from ..layout import heatmaps
from ..spec import InitEditSpec, SpecError, parse_spec

# X/Y/Z axes set these attributes on the copied ``p``; they win over the UI/API spec.
XYZ_REROLL_SEED = "initedit_xyz_reroll_seed"
XYZ_REROLL_STRENGTH = "initedit_xyz_reroll_strength"
XYZ_ROUNDS = "initedit_xyz_rounds"
XYZ_KEEP = "initedit_xyz_keep"
XYZ_KEEP_BAND = "initedit_xyz_keep_band"
XYZ_GUIDANCE = "initedit_xyz_guidance"

# the script's positional args: [enabled, spec]; A1111 cuts longer lists to this length without a word
ARG_COUNT = 2


def read_args(args: Sequence[Any]) -> tuple[bool, Any]:
    """(enabled, raw spec) from ``[enabled, spec_json]`` (UI), ``[spec_dict]`` or ``[spec_json]`` (API).

    Raises SpecError for what would otherwise be a silent no-op: a first arg that is neither an on/off
    flag nor a spec (a list, a number), more args than the script has.
    """
    if args is None:
        return False, None
    if isinstance(args, (str, bytes, dict)) or not isinstance(args, Sequence):
        raise SpecError(f"args: must be a list [enabled, spec] or [spec], got {S.show_value(args)}")
    if not args:
        return False, None
    if len(args) > ARG_COUNT:
        raise SpecError(f"args: {len(args)} values; InitEdit takes at most {ARG_COUNT}: [enabled, spec] or [spec]")
    first = args[0]
    # A1111's API fills the args a request leaves out with the UI's defaults, so [spec] arrives as
    # [spec, "{}"]: a second value that is an empty spec text is that default, not a second spec.
    extra = args[1] if len(args) > 1 else None
    alone = extra is None or (isinstance(extra, str) and extra.strip() in ("", "{}"))
    if isinstance(first, dict):  # API shorthand: the spec alone means "on"
        if not alone:
            raise SpecError("args: a spec object in first place must be alone: [spec], or [true, spec]")
        return True, first
    if isinstance(first, str):  # API: a JSON text in first place
        if not alone:
            raise SpecError("args: a spec text in first place must be alone: [spec], or [true, spec]")
        return bool(first.strip()), first
    if first is not None and not isinstance(first, bool):
        raise SpecError(f"args[0]: must be true/false (enabled) or a spec object, got {S.show_value(first)}")
    raw = args[1] if len(args) > 1 else None
    if raw is not None and not isinstance(raw, (str, dict)):
        raise SpecError(f"args[1]: must be a spec object or its JSON text, got {S.show_value(raw)}")
    return bool(first), raw


def spec_from_args(args: Sequence[Any], p: Any = None) -> tuple[bool, InitEditSpec, list[str]]:
    """(enabled, spec, notes). Raises SpecError with the field named when the input is bad."""
    enabled, raw = read_args(args)
    if not enabled:
        return False, InitEditSpec(), []
    spec = parse_spec(raw)
    spec, notes = apply_xyz_overrides(spec, p)
    return True, spec, notes


def _number(value: Any, cast, axis: str):
    try:
        return cast(value)
    except (TypeError, ValueError, OverflowError):
        raise SpecError(f"X/Y/Z {axis}: {value!r} is not a number") from None


def apply_xyz_overrides(spec: InitEditSpec, p: Any) -> tuple[InitEditSpec, list[str]]:
    """The X/Y/Z axis values set on ``p`` written into the spec's dict, then one ``parse_spec``.

    Reroll seed axis: region i gets seed ``(value + i) mod SEED_SPAN`` (as vary "reroll" wraps), so a value of
    4294967295 with two regions gives seeds 4294967295 and 0; -1 leaves every region random.
    """
    notes: list[str] = []
    if p is None:
        return spec, notes
    seed, strength, rounds, keep, guidance = (getattr(p, a, None) for a in
                                              (XYZ_REROLL_SEED, XYZ_REROLL_STRENGTH, XYZ_ROUNDS, XYZ_KEEP, XYZ_GUIDANCE))
    band = getattr(p, XYZ_KEEP_BAND, None)
    if all(v is None for v in (seed, strength, rounds, keep, guidance, band)):
        return spec, notes
    d = spec.to_dict()
    regions = d.get("reroll", [])
    axes: list[str] = []
    if (seed is not None or strength is not None or keep is not None or band is not None) and not regions:
        notes.append("X/Y/Z reroll axis ignored: the spec has no reroll region")
    if guidance is not None and not spec.layout:
        notes.append("X/Y/Z layout guidance ignored: the spec has no layout box")
    if rounds is not None and not spec.layout:
        notes.append("X/Y/Z layout rounds ignored: the spec has no layout box")
    if seed is not None and regions:
        base = _number(seed, int, "reroll seed")
        for i, r in enumerate(regions):
            r["seed"] = base if i == 0 or base < 0 else S.wrap_seed(base + i)
        axes.append("reroll seed")
    if strength is not None and regions:
        value = _number(strength, float, "reroll strength")
        for r in regions:
            r["strength"] = value
        axes.append("reroll strength")
    if keep is not None and regions:
        d["keep"] = _number(keep, float, "keep the rest")
        axes.append("keep the rest")
    if band is not None and regions:
        d["keep_band"] = _number(band, float, "keep band")
        axes.append("keep band")
    if guidance is not None and spec.layout:
        d["guidance"] = _number(guidance, float, "layout guidance")
        axes.append("layout guidance")
    if rounds is not None:
        d["rounds"] = _number(rounds, int, "layout rounds")
        axes.append("layout rounds")
    try:
        return parse_spec(d), notes
    except SpecError as e:
        raise SpecError(f"X/Y/Z {', '.join(axes)}: {e}") from None


def spec_facts() -> dict:
    """What the browser needs to know about the spec, from lib_initedit/spec.py (its one home): keys, limits,
    choices, defaults, which fields are always written with their section. ui.py renders it as JSON into the
    editor's root; the JS keeps no copy."""
    fields = []
    for name, facts in S.SPEC_FACTS.items():
        value = S.DEFAULTS[name]
        entry: dict[str, Any] = {"name": name, "default": value}
        if facts.choices is not None:
            entry.update(type="choice", choices=list(facts.choices))
        elif isinstance(value, bool):
            entry.update(type="bool")
        else:
            entry.update(type="int" if isinstance(value, int) else "float", min=facts.limits[0], max=facts.limits[1])
        fields.append(entry)
    return {
        "keys": {"infotext": S.INFOTEXT_KEY, "error": S.ERROR_KEY, "note": S.NOTE_KEY},
        "fields": fields,
        "pinned": {name: list(sections) for name, sections in S.SECTION_OF.items()},
        "region": {name: {"default": S.REGION_DEFAULTS[name], "min": facts.limits[0], "max": facts.limits[1]}
                   for name, facts in S.REGION_FACTS.items()},
        "max_seed": S.MAX_SEED,
        "palette": ["#%02x%02x%02x" % tuple(rgb) for rgb in heatmaps.PALETTE],  # box k's colour, canvas and heatmaps
        "random_seed_limit": S.RANDOM_SEED_LIMIT,
        "seed_span": S.SEED_SPAN,
        "max_regions": S.MAX_REGIONS,
        "max_boxes": S.MAX_BOXES,
        "max_mask_pixels": S.MAX_MASK_PIXELS,
    }
