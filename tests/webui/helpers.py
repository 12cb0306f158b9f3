"""What the end-to-end tiers share: the API client, one launcher for every WebUI of the family, the test-only UNet
input capture, infotext readers and common specs.

A server the tests start runs on the CPU, offline, on a free loopback port (the first free one of
``INITEDIT_WEBUI_PORTS``, e.g. "7880-7889", if set) with a temporary data dir that links this checkout in as an
extension. WebUIs before 1.10 (no ``--models-dir``, e.g. 1.9.4) get ``--ckpt-dir`` / ``--lora-dir`` into the models
folder, its VAE-approx folder linked into the data dir, and ``--disable-safe-unpickle`` (1.9's unpickler refuses .pt
files written by torch >= 2.6; only the lab's own files load), as the lab's run_webui.sh does.
"""
from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import tempfile
import textwrap
import threading
import time
import urllib.error
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SKIP_REASON = ("no WebUI given: set INITEDIT_WEBUI_URL to a running WebUI with InitEdit installed, or "
               "INITEDIT_WEBUI_DIR to an installed WebUI (see README, 'Tests')")
WHOLE = {"reroll": [{"box": [0, 0, 1, 1], "seed": 4242, "strength": 1.0}]}  # a whole-image reroll with seed 4242
LAYOUT = {"layout": [{"phrase": "cat", "box": [0, 0, 0.5, 1]}, {"phrase": "red car", "box": [0.5, 0, 1, 1]}]}


class WebUI:
    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def request(self, method, path, body=None, timeout=600):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def get(self, path):
        return self.request("GET", path)

    def txt2img(self, spec=None, checkpoint=None, **fields):
        body = {"prompt": "a cat and a red car", "negative_prompt": "", "sampler_name": "Euler",
                "width": 64, "height": 64, "steps": 4, "seed": 1, "cfg_scale": 7, "batch_size": 1,
                "n_iter": 1, "send_images": True, "save_images": False}
        if checkpoint:
            body["override_settings"] = {"sd_model_checkpoint": checkpoint}
            body["override_settings_restore_afterwards"] = True
        body.update(fields)
        if spec is not None:
            body.setdefault("alwayson_scripts", {})["InitEdit"] = {"args": spec if isinstance(spec, list) else [spec]}
        status, js = self.request("POST", "/sdapi/v1/txt2img", body)
        assert status == 200, f"HTTP {status}: {js}"
        js["info"] = json.loads(js["info"])
        return js


def pixels(js, i=0):
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(js["images"][i]))).convert("RGB")).astype(int)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port() -> int:
    """A free loopback port: the first free one of INITEDIT_WEBUI_PORTS ("7880-7889") if set, else any."""
    spec = os.environ.get("INITEDIT_WEBUI_PORTS")
    if not spec:
        return free_port()
    low, _, high = spec.partition("-")
    for port in range(int(low), int(high or low) + 1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in INITEDIT_WEBUI_PORTS={spec}")


def webui_version_args(webui_dir: str, models: str, data: str) -> list[str]:
    """Where the WebUI finds the models: ``--models-dir`` (1.10+), or the per-kind folders before it."""
    try:
        cmd_args = open(os.path.join(webui_dir, "modules", "cmd_args.py")).read()
    except OSError:
        cmd_args = "--models-dir"
    if "--models-dir" in cmd_args:
        return ["--models-dir", models]
    approx = os.path.join(models, "VAE-approx")  # looked up in <data>/models before the WebUI folder
    if os.path.isdir(approx):
        os.makedirs(os.path.join(data, "models"), exist_ok=True)
        os.symlink(approx, os.path.join(data, "models", "VAE-approx"))
    return ["--ckpt-dir", os.path.join(models, "Stable-diffusion"), "--lora-dir", os.path.join(models, "Lora"),
            "--disable-safe-unpickle"]


def webui_models_dir(webui_dir: str, env_prefix: str = "INITEDIT_WEBUI") -> str:
    """The models folder: ``<env_prefix>_MODELS``, else the lab's (next to the WebUI folder)."""
    return os.environ.get(f"{env_prefix}_MODELS") or os.path.join(webui_dir, "..", "models")


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def python_of(webui_dir: str, env_prefix: str = "INITEDIT_WEBUI") -> str:
    """The WebUI's python: ``<env_prefix>_PYTHON``, else its venv (DIR/venv or the lab's DIR/../venv)."""
    return os.environ.get(f"{env_prefix}_PYTHON") or next(
        (p for p in (os.path.join(webui_dir, "venv/bin/python"), os.path.join(webui_dir, "../venv/bin/python"))
         if os.path.exists(p)), "python3")


def launch(webui_dir: str, python: str, flags: list, extensions: dict | None = None, scripts: dict | None = None,
           ready_path: str | None = None, startup_s: float = 300, env: dict | None = None, data: str | None = None):
    """Start a WebUI (any of the family: A1111, Forge 2, Neo, reForge, Classic) on a free loopback port, CPU and
    offline, with a temporary data dir whose extensions are this checkout, ``extensions`` (name -> folder, linked)
    and ``scripts`` (extension name -> (file name, source) of a test-only script, written). ``flags``: the WebUI's
    own launch flags (CPU, models, checkpoint). Returns (process, url, log path) once start-up is over and the API
    answers; with ``ready_path`` it also waits for that route (an extension's API is added after the WebUI's own)
    and gives up on it, not on the server, after 90 s. ``data``: the data dir, if the flags already name files in
    it (default: a new temporary one)."""
    data = data or tempfile.mkdtemp(prefix="initedit-e2e-")
    folder = os.path.join(data, "extensions")
    os.makedirs(folder)
    # Forge Neo's default temp_dir is <data>/tmp, which it never creates: gallery images not saved elsewhere
    # (a heatmap sheet, an image with saving off) then fail with FileNotFoundError (modules/ui_tempdir.py)
    os.makedirs(os.path.join(data, "tmp"), exist_ok=True)
    for name, (file_name, source) in (scripts or {}).items():
        os.makedirs(os.path.join(folder, name, "scripts"))
        with open(os.path.join(folder, name, "scripts", file_name), "w") as f:
            f.write(textwrap.dedent(source))
    for name, path in {"sd-webui-initedit": ROOT, **(extensions or {})}.items():
        os.symlink(os.path.abspath(path), os.path.join(folder, name))
    port = _port()
    env = dict(os.environ, GRADIO_SERVER_NAME="127.0.0.1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1", **(env or {}))
    log = open(os.path.join(data, "webui.log"), "w")
    proc = subprocess.Popen(
        [python, "launch.py", "--skip-prepare-environment", "--skip-install", "--skip-python-version-check",
         "--skip-torch-cuda-test", "--skip-version-check", "--api", "--port", str(port), "--data-dir", data,
         "--disable-console-progressbars", *flags],
        cwd=webui_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline, started, up = time.time() + startup_s, False, None
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the WebUI exited early; see {log.name}")
        # No request before the "Startup time" line (the end of start-up, after create_api and the app_started
        # callbacks): one that reaches the app between gradio's launch and create_api makes A1111 exit ("Cannot
        # add middleware after an application has started", 1.10.1), and one during app_started failed on 1.9.4
        # with HTTP 500. A WebUI that prints no such line is asked after 80 % of ``startup_s``.
        started = started or "Startup time" in _read(log.name) or time.time() > deadline - startup_s / 5
        if not started:
            time.sleep(1)
            continue
        try:
            urllib.request.urlopen(url + "/sdapi/v1/sd-models", timeout=2)
            up = up or time.time()
            if ready_path:
                urllib.request.urlopen(url + ready_path, timeout=2)
            return proc, url, log.name
        except OSError:  # urllib's HTTPError is an OSError too: 404 until an extension's routes exist
            if up and time.time() - up > 90:
                print(f"[initedit e2e] {ready_path} did not answer within 90 s; see {log.name}")
                return proc, url, log.name
            time.sleep(1)
    proc.kill()
    raise RuntimeError(f"the WebUI did not answer in {startup_s:.0f} s; see {log.name}")


def start_server(webui_dir: str, extensions: dict | None = None, ready_path: str | None = None,
                 ckpt: str = "tiny-sd15", extra_args=()):
    """Start an AUTOMATIC1111 WebUI (``launch`` with its CPU flags, the lab's models folder and ``ckpt``: the
    checkpoint's name in that folder, if present; ``extra_args``: more launch arguments)."""
    models = webui_models_dir(webui_dir)
    ckpt = os.path.join(models, "Stable-diffusion", ckpt + ".safetensors")
    data = tempfile.mkdtemp(prefix="initedit-e2e-")
    flags = ["--use-cpu", "all", "--no-half", "--precision", "full", "--no-download-sd-model",
             *webui_version_args(webui_dir, models, data), *(["--ckpt", ckpt] if os.path.exists(ckpt) else []),
             *extra_args]
    return launch(webui_dir, python_of(webui_dir), flags, extensions=extensions, ready_path=ready_path, data=data)


def stop_server(proc) -> None:
    """Stop a server the tests started: terminate, then kill after 30 s."""
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


# ----------------------------------------------------------------------------- UNet input capture (test only)
CAPTURE_SCRIPT = r'''"""Test-only extension (InitEdit e2e tier): records the inputs of the first UNet calls of every generation.

A forward pre-hook on the loaded model's ``model.diffusion_model`` (installed in ``process``, removed in
``postprocess``) keeps (x, timesteps, context) of the first calls: InitEdit's probe calls and the sampler's
first call(s), and counts all calls. Written after each generation to ``<this extension>/calls.npz`` with facts about the model.
"""
import json
import os

import numpy as np

import modules.scripts as scripts
from modules import shared

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "calls.npz")
LIMIT = 6
_handles = []


def _array(t):
    return None if t is None else t.detach().float().cpu().numpy()


class InitEditTestCapture(scripts.Script):
    def title(self):
        return "InitEdit test capture"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        return []

    def process(self, p, *args):
        while _handles:
            _handles.pop().remove()
        calls = p._initedit_test_calls = []
        if os.path.exists(OUT):
            os.remove(OUT)

        p._initedit_test_count = 0

        def pre(module, args_, kwargs):
            p._initedit_test_count += 1
            if len(calls) < LIMIT:
                t = args_[1] if len(args_) > 1 else kwargs.get("timesteps")
                context = args_[2] if len(args_) > 2 else kwargs.get("context")
                calls.append((_array(args_[0]), _array(t), _array(context)))

        _handles.append(shared.sd_model.model.diffusion_model.register_forward_pre_hook(pre, with_kwargs=True))

    def postprocess(self, p, processed, *args):
        while _handles:
            _handles.pop().remove()
        model = shared.sd_model
        arrays = {}
        for i, (x, t, context) in enumerate(getattr(p, "_initedit_test_calls", [])):
            arrays[f"x{i}"], arrays[f"t{i}"] = x, t
            if context is not None:
                arrays[f"c{i}"] = context
        meta = {"parameterization": getattr(model, "parameterization", None),
                "is_sd2": bool(getattr(model, "is_sd2", False)), "is_sdxl": bool(getattr(model, "is_sdxl", False)),
                "cond_stage_model": type(getattr(model, "cond_stage_model", None)).__name__,
                "has_process_before_every_sampling": hasattr(scripts.Script, "process_before_every_sampling"),
                "rng": type(getattr(p, "rng", None)).__name__, "unet_calls": getattr(p, "_initedit_test_count", 0)}
        arrays["meta"] = np.array(json.dumps(meta))
        np.savez(OUT + ".tmp.npz", **arrays)
        os.replace(OUT + ".tmp.npz", OUT)
'''


def capture_extension() -> str:
    """A temporary extension folder holding the UNet input capture script (for ``start_server(extensions=)``)."""
    folder = tempfile.mkdtemp(prefix="initedit-capture-")
    os.makedirs(os.path.join(folder, "scripts"))
    with open(os.path.join(folder, "scripts", "initedit_test_capture.py"), "w") as f:
        f.write(CAPTURE_SCRIPT)
    return folder


def read_capture(folder: str):
    """(calls, meta) of the last generation: calls[i] = {"x", "t", "c"} numpy arrays of UNet call i."""
    import numpy as np

    with np.load(os.path.join(folder, "calls.npz")) as z:
        meta = json.loads(str(z["meta"]))
        calls, i = [], 0
        while f"x{i}" in z:
            calls.append({"x": z[f"x{i}"], "t": z[f"t{i}"], "c": z[f"c{i}"] if f"c{i}" in z else None})
            i += 1
    return calls, meta


class CapturedWebUI:
    """A WebUI to generate on with one checkpoint (``checkpoint``: its title when the server has another one
    loaded, else None) and, for servers the tests started, the UNet input capture folder."""

    def __init__(self, ui: WebUI, checkpoint: str | None, capture: str | None):
        self.ui, self.checkpoint, self.capture = ui, checkpoint, capture

    def gen(self, spec=None, **fields):
        if self.checkpoint and fields.get("override_settings"):  # one override dict: the checkpoint joins it
            fields["override_settings"] = {**fields["override_settings"], "sd_model_checkpoint": self.checkpoint}
            return self.ui.txt2img(spec, override_settings_restore_afterwards=True, **fields)
        return self.ui.txt2img(spec, checkpoint=self.checkpoint, **fields)

    def calls(self):
        if self.capture is None:
            pytest.skip("the UNet input capture needs a server started by the tests (INITEDIT_WEBUI_DIR)")
        return read_capture(self.capture)


def captured_webui(name: str, hint: str):
    """Generator for a module fixture: a ``CapturedWebUI`` on checkpoint ``name`` (a server of its own with the
    capture extension for INITEDIT_WEBUI_DIR; the running one for INITEDIT_WEBUI_URL); skips, saying ``hint``,
    when the checkpoint is missing."""
    url = os.environ.get("INITEDIT_WEBUI_URL")
    if url:
        ui = WebUI(url)
        _, models = ui.get("/sdapi/v1/sd-models")
        title = next((m["title"] for m in models or [] if m["model_name"] == name), None)
        if title is None:
            pytest.skip(f"no {name} checkpoint in the WebUI at {url}: {hint}")
        yield CapturedWebUI(ui, title, None)
        return
    webui_dir = os.environ.get("INITEDIT_WEBUI_DIR")
    if not webui_dir:
        pytest.skip(SKIP_REASON)
    models = webui_models_dir(webui_dir)
    if not os.path.exists(os.path.join(models, "Stable-diffusion", name + ".safetensors")):
        pytest.skip(f"no {name} checkpoint in {models}: {hint}")
    folder = capture_extension()
    proc, url, log = start_server(webui_dir, extensions={"initedit-test-capture": folder}, ckpt=name)
    try:
        yield CapturedWebUI(WebUI(url), None, folder)
    finally:
        stop_server(proc)


PROBE_LAYOUT = {**LAYOUT, "heatmaps": True}


def check_probe_matches_first_call(target: CapturedWebUI, sampler: str, settings: dict, **fields):
    """With heatmaps on, the layout runs a second probe on the edited noise: that call's UNet input (x, t, context)
    must be the conditional row of the sampler's first UNet call, which runs on the same edited noise. A wrong
    input scale (e.g. for v-prediction) or a wrong first timestep fails here. Returns the capture's meta."""
    import numpy as np

    js = target.gen(PROBE_LAYOUT, sampler_name=sampler, override_settings=settings, **fields)
    text = js["info"]["infotexts"][0]
    assert "InitEdit note" not in text and "InitEdit error" not in text, text
    calls, meta = target.calls()
    assert len(calls) >= 3, (len(calls), meta)
    before, after, first = calls[0], calls[1], calls[2]
    assert before["x"].shape[0] == after["x"].shape[0] == 1 and first["x"].shape[0] >= 1
    # the layout edit is a permutation of whole blocks: both probes see the same values
    np.testing.assert_array_equal(np.sort(before["x"].ravel()), np.sort(after["x"].ravel()))
    ratio = float(np.abs(first["x"][:1]).mean() / max(float(np.abs(after["x"]).mean()), 1e-12))
    np.testing.assert_allclose(after["x"], first["x"][:1], rtol=1e-4, atol=1e-4,
                               err_msg=f"probe input != sampler's first UNet input (magnitude ratio {ratio:.6f})")
    np.testing.assert_allclose(after["t"], first["t"][:1], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(after["c"], first["c"][:1], rtol=1e-5, atol=1e-5)
    return meta


def xyz_args(webui, x_label: str, x_values: str, sub_images: bool = True) -> list:
    """Positional script_args for the txt2img X/Y/Z plot, built from /sdapi/v1/script-info by label (reForge's
    xyz_grid has more arguments than A1111's): X is ``x_label`` with ``x_values``, each cell's image returned
    (``sub_images``), the rest their defaults."""
    status, scripts = webui.get("/sdapi/v1/script-info")
    assert status == 200, scripts
    xyz = next(s for s in scripts if s["name"] == "x/y/z plot" and not s["is_img2img"])
    args = []
    for i, arg in enumerate(xyz["args"]):
        label, value = arg.get("label") or "", arg.get("value")
        if label.endswith(" type"):  # an index dropdown: script-info shows its label
            value = arg["choices"].index(x_label if i == 0 else value)
        elif label.endswith(" values"):
            value = (x_values if i == 1 else "") if value == "" else []  # text box, then its dropdown twin
        elif label == "Include Sub Images":
            value = sub_images
        args.append(value)
    return args


# ----------------------------------------------------------------------------- infotexts


def infotext(js, i=0):
    return js["info"]["infotexts"][i]


def infotext_without(js, *fields, i=0):
    """Image i's infotext with ``fields`` taken out of its InitEdit spec: as written before they existed."""
    spec = initedit_of(js, i)
    quoted = json.dumps(json.dumps(spec, separators=(",", ":")))
    text = infotext(js, i)
    assert quoted in text
    legacy = {k: v for k, v in spec.items() if k not in fields}
    return text.replace(quoted, json.dumps(json.dumps(legacy, separators=(",", ":"))))


def reproduce(webui, text):
    """The image an infotext gives through the API (its own prompt, seed and settings)."""
    status, js = webui.request("POST", "/sdapi/v1/txt2img", {"infotext": text, "send_images": True,
                                                             "save_images": False})
    assert status == 200, js
    return js


def initedit_of(js, i=0):
    """The resolved spec written into image i's infotext (key "InitEdit", a quoted JSON text)."""
    text = infotext(js, i)
    start = text.index('InitEdit: "') + len("InitEdit: ")
    quoted, _ = json.JSONDecoder().raw_decode(text[start:])
    return json.loads(quoted)


# ----------------------------------------------------------------------------- interrupts, and nothing left behind
def interrupt_mid_sampling(ui: WebUI, generate, timeout: float = 600):
    """Run ``generate()`` (a txt2img request) in a thread and send /sdapi/v1/interrupt once the progress endpoint
    reports a sampling step strictly between 0 and the last: the interrupt provably comes during sampling (after
    the probe, before the end). Returns (step, steps) seen then, after the request has come back and the WebUI
    says that job was interrupted."""
    done = {}
    thread = threading.Thread(target=lambda: done.setdefault("js", generate()), daemon=True)
    thread.start()
    seen, deadline = None, time.time() + timeout
    while seen is None and thread.is_alive() and time.time() < deadline:
        _, progress = ui.get("/sdapi/v1/progress?skip_current_image=true")
        state = (progress or {}).get("state") or {}
        step, steps = state.get("sampling_step", 0), state.get("sampling_steps", 0)
        if state.get("job") and 0 < step < steps - 1:
            ui.request("POST", "/sdapi/v1/interrupt", {})
            seen = (step, steps)
        else:
            time.sleep(0.02)
    thread.join(max(deadline - time.time(), 1))
    assert not thread.is_alive(), "the interrupted request did not come back"
    assert seen is not None, "the request ended before the progress endpoint showed a step inside sampling"
    _, progress = ui.get("/sdapi/v1/progress?skip_current_image=true")
    assert progress["state"]["interrupted"], progress  # the flag the sampler stops on, reset when a job begins
    return seen


def check_nothing_left_behind(ui, **fields):
    """A plain generation before and after a round of what InitEdit does (region reroll, keep 1, layout with guidance
    and heatmaps, a refused spec) is the same image: self-contained, whatever ran before. ``fields``: request fields
    for every generation (e.g. the checkpoint)."""
    import numpy as np

    before = pixels(ui.txt2img(**fields))
    ui.txt2img(WHOLE, **fields)
    ui.txt2img({"reroll": [{"box": [0, 0, 0.5, 0.5], "seed": 7, "feather": 0.05}], "keep": 1.0}, **fields)
    ui.txt2img({**LAYOUT, "guidance": 8, "heatmaps": True}, **fields)
    status, js = ui.request("POST", "/sdapi/v1/txt2img", {"prompt": "a cat", "width": 64, "height": 64, "steps": 4,
                                                          "alwayson_scripts": {"InitEdit": {"args": [{"bogus": 1}]}}})
    assert status == 422, (status, js)
    assert np.array_equal(pixels(ui.txt2img(**fields)), before)

