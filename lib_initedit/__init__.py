"""InitEdit: edit the initial noise of a diffusion model (region reroll, layout by noise blocks).

Everything here is plain torch and runs without the WebUI, except the `webui` subpackage.
"""
__version__ = "0.1.0"
