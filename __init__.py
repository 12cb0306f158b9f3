"""ComfyUI's entry: cloned into ComfyUI's ``custom_nodes/`` this repository is the InitEdit node pack.

It imports nothing of the WebUI (the WebUI loads ``scripts/*.py`` and never this file). Outside ComfyUI
(``comfy`` not importable) it registers nothing.
"""
try:
    import comfy.patcher_extension  # noqa: F401
except ImportError:  # not inside ComfyUI
    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = {}, {}
else:
    from .lib_initedit.comfy.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: F401

WEB_DIRECTORY = "./comfy_web"
__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
