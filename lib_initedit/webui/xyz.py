"""X/Y/Z plot axes: reroll seed, reroll strength, keep the rest, keep band, layout rounds, layout guidance.

Each axis only sets an attribute on the copied ``p``; args.apply_xyz_overrides writes them into the spec's
dict and parses it once, so an axis value is validated exactly as the same value in the UI or the API.
"""
from __future__ import annotations

from modules import scripts

from . import args

AXES = (
    ("[InitEdit] Reroll seed", int, args.XYZ_REROLL_SEED),
    ("[InitEdit] Reroll strength", float, args.XYZ_REROLL_STRENGTH),
    ("[InitEdit] Keep the rest", float, args.XYZ_KEEP),
    ("[InitEdit] Keep band", float, args.XYZ_KEEP_BAND),
    ("[InitEdit] Layout rounds", int, args.XYZ_ROUNDS),
    ("[InitEdit] Layout guidance", float, args.XYZ_GUIDANCE),
)


def _setter(attr, cast):
    def apply(p, value, _values):
        setattr(p, attr, cast(value))
    return apply


def register() -> None:
    module = next((d.module for d in scripts.scripts_data if d.script_class.__module__ == "xyz_grid.py"), None)
    if module is None:
        return
    axis = getattr(module, "AxisOptionTxt2Img", module.AxisOption)
    labels = {o.label for o in module.axis_options}
    for label, cast, attr in AXES:
        if label not in labels:
            module.axis_options.append(axis(label, cast, _setter(attr, cast)))
