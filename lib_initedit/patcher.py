"""The patcher family's shared ground: hosts whose UNet is wrapped in a ``ModelPatcher`` (ComfyUI, Forge 2 / Neo
``backend/``, reForge / Forge Classic ``ldm_patched``). Pure torch: the patcher is duck-typed.

Their ``BasicTransformerBlock`` runs a cross-attention in one of two ways. Without an attn2 *replace* patch it
calls ``attn2.forward`` (which per-instance hooks and the layout guidance's forward wrappers see). With one
(IP-Adapter and other extensions register them on a patcher clone, keyed ``(block name, number, transformer
index)`` or ``(block name, number)``) it calls ``to_q`` / ``to_k`` / ``to_v`` and the patch instead, and
``attn2.forward`` never runs. So:

- the probe reads the text cross-attention on a copy of the options without attn2 replace patches
  (``probe_model_options``);
- layout guidance acts through the replace patches on a copy of the options (``GuidedBlocks.options``): the
  block's inputs are kept by an ``attn2_patch``, each replace patch runs unchanged and says which block it
  served, and an ``attn2_output_patch`` hands ``to_out(patch output)`` to each guide's ``guide_output``.

Patches are data on a clone: nothing here writes to the patcher or options it is given.
"""
from __future__ import annotations

import torch

ATTN2 = "attn2"


def attn2_modules(unet: torch.nn.Module) -> dict:
    """``(block name, number, transformer index) -> attn2`` for every cross-attention of an ldm-layout UNet: the
    keys ``BasicTransformerBlock`` looks its replace patch up by (``transformer_options["block"]`` is
    ``("input", i)`` / ``("middle", 0)`` / ``("output", i)``, ``"block_index"`` the block's index in its
    SpatialTransformer's ``transformer_blocks``; a patch keyed ``(name, number)`` serves all of them)."""
    groups = [("input", i, b) for i, b in enumerate(getattr(unet, "input_blocks", None) or [])]
    if getattr(unet, "middle_block", None) is not None:
        groups.append(("middle", 0, unet.middle_block))
    groups += [("output", i, b) for i, b in enumerate(getattr(unet, "output_blocks", None) or [])]
    found: dict = {}
    for name, number, block in groups:
        for layer in block.modules():
            for index, transformer in enumerate(getattr(layer, "transformer_blocks", None) or []):
                attn2 = getattr(transformer, "attn2", None)
                if isinstance(attn2, torch.nn.Module):
                    found.setdefault((name, number, index), attn2)
    return found


def attn2_replace_patches(model_options: dict) -> dict:
    """The attn2 replace patches registered in ``model_options`` (key -> patch)."""
    transformer = (model_options or {}).get("transformer_options") or {}
    return (transformer.get("patches_replace") or {}).get(ATTN2) or {}


def probe_model_options(model_options: dict) -> tuple[dict, list]:
    """A copy of the options without attn2 replace patches, and the keys left out (see the module doc)."""
    options = dict(model_options)
    transformer = dict(options.get("transformer_options", {}))
    replace = dict(transformer.get("patches_replace", {}))
    dropped = list(replace.pop(ATTN2, {}).keys())
    transformer["patches_replace"] = replace
    options["transformer_options"] = transformer
    return options, dropped


class GuidedBlocks:
    """What goes on a copy of ``model_options`` so that the guides also act where an attn2 replace patch
    stands in for ``attn2.forward``. Per block:

    1. ``record``, the last ``attn2_patch``: keeps (hidden states, context) as ``to_q`` / ``to_k`` get them;
    2. the replace patch, wrapped (``GuidedReplace``): the original runs unchanged on q / k / v, and the wrapper
       notes that this block's attention was replaced (and which attn2 module it is);
    3. ``apply``, the first ``attn2_output_patch``: on the block's ``attn2.to_out(patch output)``, the attention
       output as ``attn2.forward`` would give it, each guide adds its change: ``guide(module, out, x, context)``.
    Blocks without a replace patch go through ``attn2.forward`` (the guides' forward wrappers): 1 and 3 pass."""

    def __init__(self, modules: dict, guides: list):
        self.modules, self.guides = modules, guides
        self.inputs: tuple | None = None
        self.replaced: tuple | None = None
        self.calls = 0  # replaced attn2 calls handed to the guides (tests, reports)

    def record(self, n, context, value, extra_options):
        self.inputs, self.replaced = (n, context), None
        return n, context, value

    def note_replaced(self, extra_options) -> None:
        block = extra_options.get("block") if isinstance(extra_options, dict) else None
        module = None
        if isinstance(block, (tuple, list)) and len(block) >= 2:
            module = self.modules.get((block[0], block[1], extra_options.get("block_index", 0)))
        self.replaced = (module, *self.inputs) if module is not None and self.inputs is not None else None

    def apply(self, n, extra_options):
        replaced, self.replaced, self.inputs = self.replaced, None, None
        if replaced is None:
            return n
        module, x, context = replaced
        for guide in self.guides:
            n = guide(module, n, x, context)
        self.calls += 1
        return n

    def options(self, model_options: dict) -> dict:
        """A copy of ``model_options`` with fresh containers along every path a patcher writes to (loaders move
        patches in place) and the three pieces above; the patches themselves are the original objects, nothing
        of ``model_options`` is changed."""
        options = dict(model_options)
        transformer = dict(options.get("transformer_options") or {})
        replace = {name: dict(table) for name, table in (transformer.get("patches_replace") or {}).items()}
        replace[ATTN2] = {key: GuidedReplace(self, patch) for key, patch in replace.get(ATTN2, {}).items()}
        patches = {name: list(items) for name, items in (transformer.get("patches") or {}).items()}
        patches["attn2_patch"] = patches.get("attn2_patch", []) + [self.record]
        patches["attn2_output_patch"] = [self.apply] + patches.get("attn2_output_patch", [])
        transformer["patches_replace"], transformer["patches"] = replace, patches
        options["transformer_options"] = transformer
        return options


class GuidedReplace:
    """An attn2 replace patch that runs the original and tells ``GuidedBlocks`` the block was replaced."""

    def __init__(self, blocks: GuidedBlocks, patch):
        self.blocks, self.patch = blocks, patch

    def __call__(self, q, k, v, extra_options):
        out = self.patch(q, k, v, extra_options)
        self.blocks.note_replaced(extra_options)
        return out

    def to(self, *args, **kwargs):  # loaders move the patches that can move (model_patches_to)
        if hasattr(self.patch, "to"):
            self.patch = self.patch.to(*args, **kwargs)
        return self


def output_guides(hooks) -> list:
    """The parts of ``hooks`` (a SamplingHooks, or one part) that can guide an attention output given from
    outside their forward wrappers: ``guide_output(module, out, x, context)``; a part with ``modules`` guides
    only those."""
    guides = []
    for part in getattr(hooks, "parts", None) or [hooks]:
        guide_output = getattr(part, "guide_output", None)
        if not callable(guide_output) or not getattr(part, "enabled", True):
            continue
        modules = getattr(part, "modules", None)
        guides.append(guide_output if modules is None else _only(guide_output, {id(m) for m in modules}))
    return guides


def _only(guide_output, ids: set):
    def guide(module, out, x, context):
        return guide_output(module, out, x, context) if id(module) in ids else out
    return guide


class PatcherHost:
    """Base of every patcher-family host: where the UNet is, and the two copies of its options that the probe
    and the guidance need. A host says where its patcher is (``unet_patcher``); everything else here follows."""

    PROBE_DROPS_REPLACE = ("the layout probe leaves out attn2 replace patches of {n} block(s) (e.g. IP-Adapter): "
                           "it reads the text cross-attention without them")

    def unet_patcher(self, p=None):
        """The ModelPatcher the sampler will run (``p``: the host's per-generation object, if it has one)."""
        raise NotImplementedError

    def unet_module(self) -> torch.nn.Module:
        """The patcher's ``model.diffusion_model``: the module that holds the ``attn2`` layers."""
        return self.unet_patcher().model.diffusion_model

    def probe_options(self, patcher) -> dict:
        """The patcher's options for the probe (no attn2 replace patches); says once when some were left out."""
        options, dropped = probe_model_options(patcher.model_options)
        if dropped:
            self.say_once(self.PROBE_DROPS_REPLACE.format(n=len(dropped)))
        return options

    def guided_blocks(self, patcher, hooks) -> GuidedBlocks | None:
        """A ``GuidedBlocks`` for ``patcher`` when it has attn2 replace patches and ``hooks`` has a part that
        guides attention outputs; None when nothing needs it (then nothing is cloned)."""
        guides = output_guides(hooks)
        if not guides or not attn2_replace_patches(getattr(patcher, "model_options", None) or {}):
            return None
        return GuidedBlocks(attn2_modules(patcher.model.diffusion_model), guides)

    def guided_clone(self, patcher, hooks):
        """``(clone, blocks)``: a clone of ``patcher`` whose options guide through its attn2 replace patches, or
        ``(None, None)`` when nothing needs guiding there."""
        blocks = self.guided_blocks(patcher, hooks)
        if blocks is None:
            return None, None
        clone = patcher.clone()
        clone.model_options = blocks.options(patcher.model_options)
        replace = attn2_replace_patches(patcher.model_options)
        covered = sum(1 for key in blocks.modules if key in replace or key[:2] in replace)
        self.say_once(f"layout guidance also acts through the attn2 replace patches ({covered} of the UNet's "
                      f"{len(blocks.modules)} attn2 layers are replaced)")
        return clone, blocks

    def say_once(self, message: str) -> None:
        """A message for the user, once per process (hosts print it their way)."""
