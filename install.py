"""InitEdit needs nothing beyond what the WebUI ships (torch, numpy, gradio, Pillow): nothing to install.

The WebUI runs this file at start-up (unless --skip-install); it only checks the one thing that could
be missing on an unusual install, and says so instead of failing later.
"""
import importlib.util

if importlib.util.find_spec("PIL") is None:
    print("InitEdit: Pillow is missing from this WebUI's environment; masks and heatmaps will not work")
