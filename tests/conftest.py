"""Shared fixtures and the test tiers.

Every test has exactly one tier marker, given by its folder (``TIER_OF_FOLDER``) unless the file sets another
one with ``pytestmark = pytest.mark.<tier>``. Run one tier with ``python3 -m pytest -q tests -m <tier>``.
"""
import os
import sys
from pathlib import Path

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

TIERS = {
    "unit": "runs anywhere, no WebUI: the library, the toy world, the hosts' logic on stand-ins",
    "webui": "a real AUTOMATIC1111 WebUI through its API (INITEDIT_WEBUI_URL or INITEDIT_WEBUI_DIR); skips without",
    "browser": "headless Chromium through Playwright (Debian's chromium); the live page also needs INITEDIT_WEBUI_URL",
    "lab": "another WebUI or extension built by tests/tooling: Forge 2, reForge / Forge Classic, ControlNet",
    "comfy": "a real ComfyUI (see tests/comfy); skips without",
}
TIER_OF_FOLDER = {"webui": "webui", "browser": "browser", "comfy": "comfy"}  # any other folder: unit


def tier_of_path(path: Path) -> str:
    """The tier a test file gets from its folder (tests/<folder>/...)."""
    parts = path.resolve().relative_to(Path(ROOT) / "tests").parts
    return TIER_OF_FOLDER.get(parts[0], "unit") if len(parts) > 1 else "unit"


class _RepositoryRootIsNoPackage:
    """The repository root holds ComfyUI's ``__init__.py`` (the node pack's entry). Collected as a package,
    pytest would import it (and ComfyUI with it) before any test: the root is collected as a plain folder."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_collect_directory(self, path, parent):
        if path == Path(ROOT) and (path / "__init__.py").is_file():
            return pytest.Dir.from_parent(parent, path=path)
        return None


def pytest_configure(config):
    for name, what in TIERS.items():
        config.addinivalue_line("markers", f"{name}: tier: {what}")
    if not config.pluginmanager.has_plugin("initedit-root-dir"):
        config.pluginmanager.register(_RepositoryRootIsNoPackage(), "initedit-root-dir")


def pytest_collection_modifyitems(config, items):
    for item in items:
        tiers = {m.name for m in item.iter_markers() if m.name in TIERS}
        if len(tiers) > 1:
            raise pytest.UsageError(f"{item.nodeid} has more than one tier: {sorted(tiers)}")
        if not tiers:
            item.add_marker(getattr(pytest.mark, tier_of_path(Path(str(item.path)))))


@pytest.fixture()
def tiny_unet():
    """A fresh ldm-style test UNet (tests/ldm_like.py), the same weights every time."""
    from tests.ldm_like import tiny_unet as build

    return build()


@pytest.fixture()
def hook_count():
    """hook_count(model): forward (pre-)hooks left on the model's modules."""
    from tests.ldm_like import hook_count as count

    return count
