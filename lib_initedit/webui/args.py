"""Script args (UI positional or API dict) and X/Y/Z overrides -> one validated spec.

No ``modules.*`` here: this is plain data handling, tested without a WebUI.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from ..spec import InitEditSpec, SpecError, parse_spec

# X/Y/Z axes set these attributes on the copied ``p``; they win over the UI/API spec.
XYZ_REROLL_SEED = "initedit_xyz_reroll_seed"
XYZ_REROLL_STRENGTH = "initedit_xyz_reroll_strength"
XYZ_ROUNDS = "initedit_xyz_rounds"


def read_args(args: Sequence[Any]) -> tuple[bool, Any]:
    """(enabled, raw spec) from ``[enabled, spec_json]`` (UI) or ``[spec_dict]`` (API)."""
    if not args:
        return False, None
    first = args[0]
    if isinstance(first, dict):  # API shorthand: the spec alone means "on"
        return True, first
    raw = args[1] if len(args) > 1 else None
    if isinstance(first, str):  # API: a JSON text in first place
        return bool(first.strip()), first
    return bool(first), raw


def spec_from_args(args: Sequence[Any], p: Any = None) -> tuple[bool, InitEditSpec, list[str]]:
    """(enabled, spec, notes). Raises SpecError with the field named when the input is bad."""
    enabled, raw = read_args(args)
    if not enabled:
        return False, InitEditSpec(), []
    spec = parse_spec(raw)
    spec, notes = apply_xyz_overrides(spec, p)
    return True, spec, notes


def apply_xyz_overrides(spec: InitEditSpec, p: Any) -> tuple[InitEditSpec, list[str]]:
    notes: list[str] = []
    if p is None:
        return spec, notes
    seed = getattr(p, XYZ_REROLL_SEED, None)
    strength = getattr(p, XYZ_REROLL_STRENGTH, None)
    rounds = getattr(p, XYZ_ROUNDS, None)
    if (seed is not None or strength is not None) and not spec.reroll:
        notes.append("X/Y/Z reroll axis ignored: the spec has no reroll region")
    if seed is not None and spec.reroll:
        seed = _checked(lambda: int(seed), "X/Y/Z reroll seed", seed)
        base = parse_spec({"reroll": [{"box": [0, 0, 1, 1], "seed": seed}]}).reroll[0].seed
        spec = spec.replace(reroll=tuple(dataclasses.replace(r, seed=base + i if base >= 0 else -1)
                                         for i, r in enumerate(spec.reroll)))
    if strength is not None and spec.reroll:
        value = _checked(lambda: float(strength), "X/Y/Z reroll strength", strength)
        parse_spec({"reroll": [{"box": [0, 0, 1, 1], "strength": value}]})
        spec = spec.replace(reroll=tuple(dataclasses.replace(r, strength=value) for r in spec.reroll))
    if rounds is not None:
        if not spec.layout:
            notes.append("X/Y/Z layout rounds ignored: the spec has no layout box")
        value = _checked(lambda: int(rounds), "X/Y/Z layout rounds", rounds)
        spec = parse_spec({**spec.to_dict(), "rounds": value})
    return spec, notes


def _checked(convert, field: str, value):
    try:
        return convert()
    except (TypeError, ValueError):
        raise SpecError(f"{field}: {value!r} is not a number") from None
