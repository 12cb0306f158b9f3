"""X/Y/Z plot axes: reroll seed, reroll strength, layout rounds (set on the copied p, read by args.py)."""
from __future__ import annotations

from modules import scripts

from . import args


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
    for option in (axis("[InitEdit] Reroll seed", int, _setter(args.XYZ_REROLL_SEED, int)),
                   axis("[InitEdit] Reroll strength", float, _setter(args.XYZ_REROLL_STRENGTH, float)),
                   axis("[InitEdit] Layout rounds", int, _setter(args.XYZ_ROUNDS, int))):
        if option.label not in labels:
            module.axis_options.append(option)
