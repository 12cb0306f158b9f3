"""The editor's pure JS (spec serialisation, infotext reading, phrases, box geometry) under node; its output
must parse with lib_initedit.spec.parse_spec. Runs without a browser; skipped without node."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit  # node only, no browser

HERE = Path(__file__).resolve().parent


def test_spec_and_geometry_js():
    node = shutil.which("node") or shutil.which("nodejs")
    if not node:
        pytest.skip("node is not installed")
    from lib_initedit.spec import parse_spec
    from lib_initedit.webui.args import spec_facts

    res = subprocess.run([node, str(HERE / "js_pure_cases.js"), json.dumps(spec_facts())], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    outputs = json.loads(res.stdout.strip().splitlines()[-1])
    assert len(outputs) == 5
    for text in outputs:  # the JS writes exactly what the server would write for the same spec
        assert parse_spec(text).to_dict() == json.loads(text), text
