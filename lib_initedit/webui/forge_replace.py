"""Layout guidance through attn2 *replace* patches (Forge 2 / Neo ``backend/`` and reForge / Forge Classic
``ldm_patched``: the same ``BasicTransformerBlock`` patch protocol).

IP-Adapter and other extensions register attn2 replace patches on a UnetPatcher clone; the block then calls the
patch on q / k / v instead of ``attn2.forward``, which the guidance wraps. While the sampler runs,
``guide_replaced_attention`` puts a clone of ``forge_objects.unet`` in place whose options (1) keep the block's
hidden states and context (an ``attn2_patch``, last), (2) wrap each replace patch, which runs unchanged and says
which block it served, and (3) hand ``attn2.to_out(patch output)`` (an ``attn2_output_patch``, first) to each
guide's ``guide_output(module, out, x, context)``. The patcher is put back in ``leave()``, also on error.
"""
from __future__ import annotations

import torch

from .console import say_once as _say_once


def _sd_model(p):
    model = getattr(p, "sd_model", None)
    if model is None:
        from modules import shared
        model = shared.sd_model
    return model


def attn2_modules(unet: torch.nn.Module) -> dict:
    """``(block name, number, transformer index) -> attn2`` for every cross-attention of the UNet: the keys
    ``BasicTransformerBlock`` looks its replace patch up by (backend/nn/unet.py: ``transformer_options["block"]``
    is ``("input", i)`` / ``("middle", 0)`` / ``("output", i)``, ``"block_index"`` the block's index in its
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


class _GuidedBlocks:
    """What goes on the sampling patcher's copy of ``model_options`` so that the guides also act where an attn2
    replace patch stands in for ``attn2.forward``. Per block (backend/nn/unet.py, BasicTransformerBlock):

    1. ``record``, the last ``attn2_patch``: keeps (hidden states, context) as ``to_q`` / ``to_k`` get them;
    2. the replace patch, wrapped (``_GuidedReplace``): the original runs unchanged on q / k / v, and the wrapper
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
        """A copy of ``model_options`` with fresh containers along every path Forge writes to (its loader moves
        patches in place, ``model_patches_to``) and the three pieces above; the patches themselves are the
        original objects, nothing of ``model_options`` is changed."""
        options = dict(model_options)
        transformer = dict(options.get("transformer_options") or {})
        replace = {name: dict(table) for name, table in (transformer.get("patches_replace") or {}).items()}
        replace["attn2"] = {key: _GuidedReplace(self, patch) for key, patch in replace.get("attn2", {}).items()}
        patches = {name: list(items) for name, items in (transformer.get("patches") or {}).items()}
        patches["attn2_patch"] = patches.get("attn2_patch", []) + [self.record]
        patches["attn2_output_patch"] = [self.apply] + patches.get("attn2_output_patch", [])
        transformer["patches_replace"], transformer["patches"] = replace, patches
        options["transformer_options"] = transformer
        return options


class _GuidedReplace:
    """An attn2 replace patch that runs the original and tells ``_GuidedBlocks`` the block was replaced."""

    def __init__(self, blocks: _GuidedBlocks, patch):
        self.blocks, self.patch = blocks, patch

    def __call__(self, q, k, v, extra_options):
        out = self.patch(q, k, v, extra_options)
        self.blocks.note_replaced(extra_options)
        return out

    def to(self, *args, **kwargs):  # Forge's loader moves patches that can move (model_patches_to)
        if hasattr(self.patch, "to"):
            self.patch = self.patch.to(*args, **kwargs)
        return self


def _output_guides(hooks) -> list:
    """The parts of ``hooks`` (a SamplingHooks, or one part) that can guide an attention output given from
    outside their forward wrappers: ``guide_output(module, out, x, context)``; a part with ``modules`` guides
    only those."""
    guides = []
    for part in getattr(hooks, "parts", None) or [hooks]:
        guide_output = getattr(part, "guide_output", None)
        if not callable(guide_output) or not getattr(part, "enabled", True):
            continue
        modules = getattr(part, "modules", None)
        if modules is None:
            guides.append(guide_output)
        else:
            guides.append(_only(guide_output, {id(m) for m in modules}))
    return guides


def _only(guide_output, ids: set):
    def guide(module, out, x, context):
        return guide_output(module, out, x, context) if id(module) in ids else out
    return guide


class ReplacedAttentionGuidance:
    """``hooks`` (a SamplingHooks) plus, while they run, the attn2 replace patches of the patcher Forge samples
    with are guided too: ``enter()`` puts a clone of ``forge_objects.unet`` whose options wrap them (see
    ``_GuidedBlocks``) in place of the patcher for this sampling; ``leave()`` puts the patcher back, also after
    an error or interrupt. ``forge_objects`` is Forge's per-batch shallow copy: the shared patchers (the
    model's ``forge_objects_original`` / ``_after_applying_lora``, another extension's clone) are never written."""

    def __init__(self, p, hooks, guides: list):
        self.p, self.hooks, self.guides = p, hooks, guides
        self.blocks: _GuidedBlocks | None = None
        self._swap: tuple | None = None

    def __bool__(self) -> bool:
        return bool(self.hooks)

    def enter(self) -> None:
        self.hooks.enter()
        try:
            self._install()
        except BaseException:
            self._remove()
            self.hooks.leave(False)
            raise

    def leave(self, completed: bool) -> None:
        try:
            self._remove()
        finally:
            self.hooks.leave(completed)

    def before_call(self, index: int, total: int, cond_rows) -> None:
        self.hooks.before_call(index, total, cond_rows)

    def after_call(self, index: int, total: int, denoised):
        return self.hooks.after_call(index, total, denoised)

    def _install(self) -> None:
        objects = getattr(_sd_model(self.p), "forge_objects", None)
        patcher = getattr(objects, "unet", None)
        options = getattr(patcher, "model_options", None) or {}
        replace = ((options.get("transformer_options") or {}).get("patches_replace") or {}).get("attn2") or {}
        if not replace:
            return
        modules = attn2_modules(patcher.model.diffusion_model)
        blocks = _GuidedBlocks(modules, self.guides)
        clone = patcher.clone()
        clone.model_options = blocks.options(options)
        objects.unet = clone
        self.blocks, self._swap = blocks, (objects, patcher, clone)
        covered = sum(1 for key in modules if key in replace or key[:2] in replace)
        _say_once(f"layout guidance also acts through the attn2 replace patches ({covered} of the UNet's "
                  f"{len(modules)} attn2 layers are replaced)")

    def _remove(self) -> None:
        swap, self._swap = self._swap, None
        if swap is not None:
            objects, patcher, clone = swap
            if objects.unet is clone:  # someone else's later swap stays theirs
                objects.unet = patcher


def guide_replaced_attention(p, hooks):
    """``hooks`` as they are, or, when a part can guide attention given from outside its forward wrappers (layout
    guidance: ``guide_output``), wrapped so that it also acts through attn2 replace patches (IP-Adapter and other
    Forge extensions register them on a UnetPatcher clone; ``BasicTransformerBlock`` then calls them instead of
    ``attn2.forward``, which the guidance wraps)."""
    guides = _output_guides(hooks)
    return ReplacedAttentionGuidance(p, hooks, guides) if guides else hooks
