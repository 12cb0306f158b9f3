"""Start a Forge-family WebUI (Forge 2, Forge Neo, reForge, Forge Classic) for the e2e tests: its launch flags for the
CPU, the models folder and the tiny Forge checkpoint, given to the one launcher (helpers.launch)."""
from __future__ import annotations

import os

from tests.webui.helpers import ROOT, launch, python_of, webui_models_dir

CHECKPOINT = "tiny-forge-sd15.safetensors"  # tests/tooling/make_tiny_forge_checkpoint.py


def _read(*parts) -> str:
    try:
        with open(os.path.join(*parts)) as f:
            return f.read()
    except OSError:
        return ""


def is_neo(webui_dir: str) -> bool:
    """Forge Neo: ``modules_forge/forge_version.py`` says version "neo"."""
    return 'version = "neo"' in _read(webui_dir, "modules_forge", "forge_version.py")


def launch_flags(webui_dir: str, models: str, ckpt: str) -> list[str]:
    """This WebUI's flags for the CPU, the models folder and (where it has them) the start checkpoint:
    Forge 2 / reForge: --always-cpu, --models-dir, --ckpt; Forge Classic: --model-ref; Forge Neo: --cpu,
    --model-ref and no --ckpt (it loads the checkpoint its settings name, else the first one listed)."""
    cmd_args = _read(webui_dir, "modules", "cmd_args.py") + _read(webui_dir, "modules", "paths_internal.py")
    flags = ["--cpu" if is_neo(webui_dir) else "--always-cpu",
             "--models-dir" if '"--models-dir"' in cmd_args else "--model-ref", models]
    if '"--ckpt"' in cmd_args:
        flags += ["--no-download-sd-model"] + (["--ckpt", ckpt] if os.path.exists(ckpt) else [])
    return flags


def start_forge_family(webui_dir: str, env_prefix: str, scripts: dict | None = None, links: dict | None = None,
                       startup_s: float = 300):
    """(process, url, log path). ``env_prefix``_PYTHON / _MODELS override the lab's venv and models folder;
    ``scripts``: extension folder -> (file name, source) of a test-only script; ``links``: folder -> path."""
    python, models = python_of(webui_dir, env_prefix), webui_models_dir(webui_dir, env_prefix)
    ckpt = os.path.join(models, "Stable-diffusion", CHECKPOINT)
    # Gradio 4 serves file= URLs only under allowed paths: the WebUI's own scripts and this checkout's
    flags = [*launch_flags(webui_dir, models, ckpt), "--gradio-allowed-path", os.path.abspath(webui_dir),
             "--gradio-allowed-path", ROOT]
    return launch(webui_dir, python, flags, extensions=links, scripts=scripts, startup_s=startup_s,
                  env={"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})


KEEP_HALF = {"reroll": [{"box": [0.25, 0.25, 0.75, 0.75], "seed": 77}], "keep": 0.5, "keep_band": 0.0}


def keep_by_steps_and_by_calls(server, sampler: str):
    """The pixels of keep 0.5 counted in steps (the default) and in model calls (``fraction_of`` "calls", what
    infotexts written before it meant) on ``sampler``: equal on a sampler with one call a step, not on Heun."""
    import numpy as np

    from tests.webui.helpers import initedit_of, pixels

    by_steps = server.txt2img(KEEP_HALF, sampler_name=sampler, steps=6)
    assert initedit_of(by_steps)["fraction_of"] == "steps"
    by_calls = server.txt2img({**KEEP_HALF, "fraction_of": "calls"}, sampler_name=sampler, steps=6)
    return np.array_equal(pixels(by_steps), pixels(by_calls))
