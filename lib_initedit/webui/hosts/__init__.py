"""The WebUI hosts, one class each (``protocol.Host``), and which one serves the running WebUI, chosen by
feature; each module is imported only when chosen.

- A1111 (ldm/sgm UNets): ``a1111.A1111Host``.
- The patcher family (``patcher_family.WebUIPatcherHost``, on ``lib_initedit.patcher.PatcherHost``):
  - Forge 2 / Forge Neo (the ``backend`` package with ``backend.patcher.unet``): ``forge.ForgeHost``;
  - reForge / Forge Classic (``ldm_patched`` with ``ldm_patched.modules.samplers`` and
    ``modules_forge.forge_sampler``, the modules that host calls): ``ldm_patched.LdmPatchedHost``.
- another Forge-like WebUI (a model with ``forge_objects``, or an ``ldm_patched`` without those modules):
  ``A1111Host``, whose ``unsupported_reason()`` names the unknown patcher, so nothing is edited.

Safe to call at import time (no model needed, none is loaded by asking).
"""
from __future__ import annotations

import importlib.util
from importlib import import_module

A1111, FORGE, LDM_PATCHED = "a1111", "forge", "ldm_patched"


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent that is not a package, or a broken module spec
        return False


def loaded_model():
    """The loaded model, without loading one (``shared.sd_model`` would load the default checkpoint)."""
    try:
        from modules import sd_models
    except ImportError:
        return None
    return getattr(getattr(sd_models, "model_data", None), "sd_model", None)


def backend_kind(model=None) -> str:
    """"forge" (backend/ UNet patcher), "ldm_patched" (reForge / Forge Classic) or "a1111".

    The backend decides, not the model: Forge holds a placeholder model without ``forge_objects`` until a
    checkpoint is loaded (``FakeInitialModel``), and the controller may ask at import time."""
    if _importable("backend") and _importable("backend.patcher.unet"):
        return FORGE
    if _importable("ldm_patched"):
        return LDM_PATCHED
    model = loaded_model() if model is None else model
    if model is not None and hasattr(model, "forge_objects"):
        return LDM_PATCHED  # some other Forge line: A1111Host.unsupported_reason() names it
    return A1111


LDM_PATCHED_MODULES = ("ldm_patched.modules.samplers", "modules_forge.forge_sampler")


def ldm_patched_adapter_applies() -> bool:
    """The modules ``LdmPatchedHost`` calls are there (reForge, Forge Classic)."""
    return all(_importable(name) for name in LDM_PATCHED_MODULES)


HOST_CLASSES = {A1111: ("a1111", "A1111Host"), FORGE: ("forge", "ForgeHost"),
                LDM_PATCHED: ("ldm_patched", "LdmPatchedHost")}


def host_class_name(model=None) -> tuple[str, str]:
    """(module, class) of the host for the running WebUI."""
    kind = backend_kind(model)
    if kind == LDM_PATCHED and not ldm_patched_adapter_applies():
        kind = A1111
    return HOST_CLASSES[kind]


def select_host(model=None):
    """The host for the running WebUI: an instance of its class."""
    module, cls = host_class_name(model)
    return getattr(import_module(f"{__package__}.{module}"), cls)()
