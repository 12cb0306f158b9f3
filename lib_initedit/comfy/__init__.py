"""The ComfyUI host and nodes: the only part of InitEdit that imports ``comfy.*``."""
