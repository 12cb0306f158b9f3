"""The InitEdit section of the WebUI settings."""
from __future__ import annotations

from modules import shared

SECTION = ("initedit", "InitEdit")


def register() -> None:
    shared.opts.add_option("initedit_ancestral_follow", shared.OptionInfo(
        True, "Rerolled regions follow the reroll seed in ancestral samplers' per-step noise too",
        section=SECTION).info("off: only the initial noise is rerolled; per-step noise keeps the image seed"))
