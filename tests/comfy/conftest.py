"""The ComfyUI tier: a real ComfyUI (tests/tooling/comfy_lab.sh builds one, CPU and offline).

INITEDIT_COMFY_URL: a running ComfyUI with this checkout in custom_nodes (and the lab's tiny checkpoint pack);
INITEDIT_COMFY_DIR: a lab's ComfyUI folder: the tests start ``main.py --cpu`` there on port 8188 (or
INITEDIT_COMFY_PORT) with its Python (INITEDIT_COMFY_PYTHON, default ``<dir>/../venv/bin/python``).
Without either, every test here skips and says why.
"""
import os
import pathlib
import subprocess
import sys
import time

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
REPO = HERE.parents[1]

from comfy_client import Comfy  # noqa: E402

CKPT = "tiny-comfy-sd15.safetensors"


def _linked_here(comfy_dir: pathlib.Path) -> str | None:
    nodes = comfy_dir / "custom_nodes"
    for entry in nodes.iterdir() if nodes.is_dir() else []:
        try:
            if entry.resolve() == REPO:
                return None
        except OSError:
            continue
    return f"this checkout is not linked into {nodes} (tests/tooling/comfy_lab.sh link)"


@pytest.fixture(scope="session")
def comfy():
    url = os.environ.get("INITEDIT_COMFY_URL")
    if url:
        client = Comfy(url)
        if not client.alive():
            pytest.skip(f"INITEDIT_COMFY_URL={url} does not answer")
        yield client
        return
    directory = os.environ.get("INITEDIT_COMFY_DIR")
    if not directory:
        pytest.skip("no ComfyUI: set INITEDIT_COMFY_DIR (a lab from tests/tooling/comfy_lab.sh) or INITEDIT_COMFY_URL")
    comfy_dir = pathlib.Path(directory).resolve()
    if not (comfy_dir / "main.py").is_file():
        pytest.skip(f"INITEDIT_COMFY_DIR={comfy_dir} has no main.py")
    reason = _linked_here(comfy_dir)
    if reason:
        pytest.skip(reason)
    python = os.environ.get("INITEDIT_COMFY_PYTHON") or str(comfy_dir.parent / "venv" / "bin" / "python")
    port = int(os.environ.get("INITEDIT_COMFY_PORT", "8188"))
    client = Comfy(f"http://127.0.0.1:{port}")
    if client.alive():
        pytest.skip(f"port {port} is already taken by a running server; point INITEDIT_COMFY_URL at it instead")
    log = open(comfy_dir.parent / "logs-e2e.txt", "w")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}  # a busy 2-core machine:
    # one thread is several times faster than two fighting over the cores (results are the same)
    proc = subprocess.Popen([python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port)],
                            cwd=comfy_dir, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.time() + 240
        while not client.alive():
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"ComfyUI did not start (see {log.name})")
            time.sleep(1)
        yield client
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
