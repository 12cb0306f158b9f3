"""End-to-end tier: a real WebUI, through its API (helpers in tests/webui/helpers.py).

Either point ``INITEDIT_WEBUI_URL`` at a running WebUI that has InitEdit installed, or give
``INITEDIT_WEBUI_DIR`` (an installed stable-diffusion-webui) and optionally ``INITEDIT_WEBUI_PYTHON``
(its python; default DIR/venv/bin/python or the lab's) and ``INITEDIT_WEBUI_MODELS`` (a models folder
with the lab's tiny-sd15 / tiny-sdxl checkpoints); then a server is started for the session (helpers.start_server).
Without either: skipped.
"""
from __future__ import annotations

import os

import pytest

from tests.webui.helpers import SKIP_REASON, WebUI, start_server, stop_server


@pytest.fixture(scope="session")
def webui():
    url = os.environ.get("INITEDIT_WEBUI_URL")
    if url:
        yield WebUI(url)
        return
    webui_dir = os.environ.get("INITEDIT_WEBUI_DIR")
    if not webui_dir:
        pytest.skip(SKIP_REASON)
    proc, url, log = start_server(webui_dir)
    try:
        yield WebUI(url)
    finally:
        stop_server(proc)


@pytest.fixture(scope="session")
def checkpoints(webui):
    status, models = webui.get("/sdapi/v1/sd-models")
    return {m["model_name"]: m["title"] for m in models}
