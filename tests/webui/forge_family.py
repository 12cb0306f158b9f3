"""Start a Forge-family WebUI (Forge 2, reForge, Forge Classic) for the e2e tests: CPU, offline, a temporary
data dir that links this checkout and the given test-only extensions, the tiny Forge checkpoint."""
from __future__ import annotations

import os
import subprocess
import tempfile
import textwrap
import time
import urllib.request

from tests.webui.conftest import ROOT, _free_port

CHECKPOINT = "tiny-forge-sd15.safetensors"  # tests/tooling/make_tiny_forge_checkpoint.py


def start_forge_family(webui_dir: str, env_prefix: str, scripts: dict | None = None, links: dict | None = None,
                       startup_s: float = 300):
    """(process, url, log path). ``env_prefix``_PYTHON / _MODELS override the lab's venv and models folder;
    ``scripts``: extension folder -> (file name, source) of a test-only script; ``links``: folder -> path."""
    python = os.environ.get(f"{env_prefix}_PYTHON") or os.path.join(webui_dir, "..", "venv", "bin", "python")
    models = os.environ.get(f"{env_prefix}_MODELS") or os.path.join(webui_dir, "..", "models")
    ckpt = os.path.join(models, "Stable-diffusion", CHECKPOINT)
    data = tempfile.mkdtemp(prefix="initedit-forge-family-e2e-")
    extensions = os.path.join(data, "extensions")
    os.makedirs(extensions)
    for folder, (name, source) in (scripts or {}).items():
        os.makedirs(os.path.join(extensions, folder, "scripts"))
        with open(os.path.join(extensions, folder, "scripts", name), "w") as f:
            f.write(textwrap.dedent(source))
    for folder, path in {"sd-webui-initedit": ROOT, **(links or {})}.items():
        os.symlink(path, os.path.join(extensions, folder))
    with open(os.path.join(webui_dir, "modules", "cmd_args.py")) as f:  # Forge Classic: --model-ref
        models_flag = "--models-dir" if '"--models-dir"' in f.read() else "--model-ref"
    port = _free_port()
    env = dict(os.environ, GRADIO_SERVER_NAME="127.0.0.1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1",
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    log = open(os.path.join(data, "webui.log"), "w")
    proc = subprocess.Popen(
        [python, "launch.py", "--skip-prepare-environment", "--skip-install", "--skip-python-version-check",
         "--skip-torch-cuda-test", "--skip-version-check", "--always-cpu", "--api", "--port", str(port),
         "--data-dir", data, models_flag, models, "--no-download-sd-model", "--disable-console-progressbars",
         # Gradio 4 serves file= URLs only under allowed paths: the WebUI's own scripts and this checkout's
         "--gradio-allowed-path", os.path.abspath(webui_dir), "--gradio-allowed-path", ROOT]
        + (["--ckpt", ckpt] if os.path.exists(ckpt) else []),
        cwd=webui_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + startup_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the WebUI exited early; see {log.name}")
        try:
            urllib.request.urlopen(url + "/sdapi/v1/sd-models", timeout=2)
            with open(log.name) as f:  # the API answers before the UI (and the scripts' argument slots) is built
                if "Startup time" in f.read():
                    return proc, url, log.name
        except OSError:
            pass
        time.sleep(1)
    proc.kill()
    raise RuntimeError(f"the WebUI did not answer in {startup_s:.0f} s; see {log.name}")
