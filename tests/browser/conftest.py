"""Browser fixtures: Debian's chromium driven by Playwright (no browser download). Skips with a reason
when either is missing. Screenshots go to $INITEDIT_SHOT_DIR (default: a temp folder), printed at the end."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def chromium_path() -> str | None:
    for cand in (os.environ.get("INITEDIT_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                 shutil.which("chromium-browser")):
        if cand and os.path.exists(cand):
            return cand
    return None


@pytest.fixture(scope="session")
def shot_dir() -> Path:
    d = Path(os.environ.get("INITEDIT_SHOT_DIR") or tempfile.mkdtemp(prefix="initedit-shots-"))
    d.mkdir(parents=True, exist_ok=True)
    yield d
    print(f"\n[initedit] screenshots in {d}")


@pytest.fixture(scope="session")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    exe = chromium_path()
    if not exe:
        pytest.skip("no chromium binary (apt-get install chromium, or set INITEDIT_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield b
        b.close()
