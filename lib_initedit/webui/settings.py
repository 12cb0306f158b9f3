"""The InitEdit section of the WebUI settings: option names and defaults live here, once."""
from __future__ import annotations

SECTION = ("initedit", "InitEdit")
FOLLOW_OPTION, FOLLOW_DEFAULT = "initedit_ancestral_follow", True
KEEP_CACHE_OPTION, KEEP_CACHE_DEFAULT_MB = "initedit_keep_cache_mb", 256


def register() -> None:
    import gradio as gr

    from modules import shared

    shared.opts.add_option(FOLLOW_OPTION, shared.OptionInfo(
        FOLLOW_DEFAULT, "Rerolled regions follow the reroll seed in ancestral and SDE samplers' per-step noise too",
        section=SECTION).info("off: only the initial noise is rerolled; per-step noise keeps the image seed"))
    shared.opts.add_option(KEEP_CACHE_OPTION, shared.OptionInfo(
        KEEP_CACHE_DEFAULT_MB, "Remember recent generations for 'Keep the rest' (MB of RAM; 0 = off)",
        gr.Number, {"precision": 0, "minimum": 0}, section=SECTION).info(
        "each txt2img image's first pass is remembered (its denoised latent at every sampler call, about 64 KB "
        "a call at 512x512), so a reroll with 'Keep the rest' right after it needs no second generation; on a "
        "miss InitEdit first generates the image without the reroll"))
