"""Early-step layout guidance: an additive bias on each box phrase's cross-attention scores, pure torch.

During the first ``fraction`` of the sampling steps, on the conditional rows of the batch only, the scores of
box k's phrase columns get a bias b at the query cells inside box k and a negative one outside it (before the
softmax). Nothing else changes: the unconditional rows, the other columns, the other layers, and every step
after the guided fraction run exactly as without guidance. The strength has one of two units:

- "share" (the shipped one): ``strength`` is a share of the attention in %, tau = strength / 100. Per query
  and head, with P the phrase's share of that query's attention, b is the one bias on all its columns that
  makes the share at least tau inside the box and at most (1 - tau) x P outside:
  b = logit(P') - logit(P), P' = max(P, tau) inside, (1 - tau) P outside. The same number means the same on
  every model, however its scores are scaled (a start token that takes most of the attention, as in Stable
  Diffusion, or near-uniform attention, as in the toy world). A box that counts w times (small boxes, see
  ``box_bias``) uses 1 - (1 - tau) ** w for tau.
- "logits" (infotexts written before the unit existed): ``b = +-strength`` x the box's weight.

How it is computed (exact, composable, memory-light). Each guided ``attn2`` module's *current* instance
``forward`` (whatever it is: the class's, the WebUI's optimised one, another extension's per-instance patch
such as an IP-Adapter forward that adds image attention) is wrapped, called unchanged, and the q / k / v it
projected are kept by forward hooks on ``to_q`` / ``to_k`` / ``to_v`` (so LoRA and hypernetworks apply; when
the forward did not call them as modules they are recomputed from the inputs). For the guided rows the
wrapper adds ``to_out(delta) - to_out(0)`` to the output, where per head

    delta = softmax(s + b) v - softmax(s) v,  s = q k^T * scale,  b != 0 only on the phrase columns C.

With p = softmax(s) and f_c = p_c (e^{b_c} - 1) for c in C, Z = 1 + sum_c f_c:

    delta = (sum_c f_c v_c - (Z - 1) * (p v)) / Z

so only one softmax and one ``p v`` product over all T tokens are computed, in chunks of ``query_chunk``
query positions: the probabilities are never materialised at full size. ``to_out`` is affine (its dropout
is the identity in eval), so ``to_out(delta) - to_out(0)`` is exactly the change of the output.

A ``SamplingHooks`` part (``sampling_hooks.py``), run the same way by every host and the toy world::

    g = LayoutGuidance(unet, layers, strength, fraction, columns, boxes)   # or from_spec(...)
    hooks = SamplingHooks([g])
    hooks.enter()                             # install(): wraps the forwards
    hooks.before_call(i, total, cond_rows)    # before the model call(s) of step i
    hooks.leave(completed)                    # remove(): restores exactly the forwards found, also on error

``rows[b]`` says which row of ``cond_rows`` is image b's conditioning (default b).
Rows of an incoming ``context`` are matched to the images' conditioning by value (``cond_rows.CondRows``),
in order: the j-th row equal to image b's conditioning with b not yet matched is image b's. Unmatched
rows (unconditional, other sub-prompts) are left untouched.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from . import attention
from ..sampling_hooks import Call
from ..spec import FRACTION_OF, GUIDANCE_UNITS
from .attention_delta import DEFAULT_QUERY_CHUNK, attention_delta, share_bias
from .box_bias import BoxBias
from .cond_rows import CondRows

GUIDE_LAYER_CHOICES = ("level", "down", "coarse", "all")  # which attn2 modules are guided, see select_guided_layers
DEFAULT_GUIDED_LAYERS = "all"  # without a spec: every attn2 (docs/layout.md: better than the probe level or the down path)
DEFAULT_SIZE_POWER = 1.0  # boxes smaller than SIZE_REF get a proportionally stronger bias, up to 3x


def select_guided_layers(unet: nn.Module, choice: str = "all", probe_level: int | None = None) -> list:
    """The attn2 layers to guide: "level" = the probe layers ("level" choice of ``attention.select_layers``),
    "down" = every down-path attn2, "coarse" = every attn2 at the probe layers' resolution or coarser (down,
    middle, up: where the layout is decided; the finer layers, which shape texture and cost the most, are left
    alone), "all" = every attn2 of the UNet (down, middle, up)."""
    found = attention.find_cross_attention(unet)
    if choice == "all":
        return found
    if choice == "coarse":
        probe = attention.select_layers(found, "level") if probe_level is None else \
            attention.select_layers(found, "level", probe_level)
        level = min(layer.level for layer in probe)
        return [layer for layer in found if layer.level >= level]
    if choice == "down":
        return [layer for layer in found if layer.path == "input"]
    if choice == "level":
        return attention.select_layers(found, "level") if probe_level is None else \
            attention.select_layers(found, "level", probe_level)
    raise ValueError(f"guided layers: unknown choice {choice!r}; one of {', '.join(GUIDE_LAYER_CHOICES)}")


@dataclass
class _Item:
    columns: list[int]  # distinct token columns of this image's box phrases
    signs: list[list[tuple[int, float]]]  # per column: (box index, weight) pairs
    boxes: list[tuple]
    positions: list[list[int]]  # per box: its phrase's token columns


class LayoutGuidance:
    """Bias each box phrase's cross-attention towards its box during the first steps (see the module doc).

    unet: where the guidance learns the latent size (a forward pre-hook, while installed).
    layers: ``attention.CrossAttentionLayer`` items (or attn2 modules) to guide.
    strength: in ``units`` "share": the phrase's attention share in its box, % (below 100); in "logits": a
    score bias (0 = off: every output bit-identical). fraction: share of the steps guided.
    columns[b][k]: token positions of box k's phrase in image b's conditioning; boxes[b][k]: (x0, y0, x1, y1).
    rows: per image, the row of ``before_call``'s ``cond_rows`` that is its conditioning (default: b).
    bias / bias_fields: how each box becomes its phrase's target (``box_bias.BoxBias``, or its fields, e.g.
    ``size_power=1``: small boxes count more).
    """

    def __init__(self, unet: nn.Module, layers: Sequence[Any], strength: float, fraction: float,
                 columns: Sequence[Sequence[Sequence[int]]], boxes: Sequence[Sequence[Sequence[float]]],
                 rows: Sequence[int] | None = None, bias: BoxBias | None = None,
                 query_chunk: int = DEFAULT_QUERY_CHUNK, units: str = "logits", fraction_of: str = "calls",
                 **bias_fields):
        self.unet = unet
        self.modules = [getattr(layer, "module", layer) for layer in layers]
        self.strength = float(strength)
        if units not in GUIDANCE_UNITS:
            raise ValueError(f"guidance units: {units!r} is not one of {', '.join(GUIDANCE_UNITS)}")
        if units == "share" and not 0 <= self.strength < 100:
            raise ValueError(f"guidance: {self.strength} is outside 0..100 (a share of the attention, %)")
        self.units = units
        if fraction_of not in FRACTION_OF:
            raise ValueError(f"fraction_of: {fraction_of!r} is not one of {', '.join(FRACTION_OF)}")
        self.fraction = float(fraction)
        self.fraction_of = fraction_of
        self.box_bias = bias if bias is not None else BoxBias(**bias_fields)
        self.query_chunk = max(1, int(query_chunk))
        self.rows = list(rows) if rows is not None else None
        self.items: list[_Item] = []
        for b, item_boxes in enumerate(boxes):
            cols = columns[b] if b < len(columns) else []
            distinct: dict[int, list[tuple[int, float]]] = {}
            for k, (positions, box) in enumerate(zip(cols, item_boxes)):
                for p in positions:
                    distinct.setdefault(int(p), []).append((k, self.box_bias.weight(box)))
            self.items.append(_Item(sorted(distinct), [distinct[c] for c in sorted(distinct)],
                                    [tuple(float(v) for v in box) for box in item_boxes],
                                    [[int(p) for p in positions] for positions in cols[:len(item_boxes)]]))
        self.active = False
        self.calls_guided = 0  # guided attn2 calls so far (for tests and reports)
        self._rows = CondRows()  # this step's conditioning of each image, matched against incoming contexts
        self._bias_cache: dict = {}
        self._latent_hw: tuple[int, int] | None = None
        self._installed: list[tuple[nn.Module, Any, bool, Any]] = []  # (module, saved forward, had own, wrapper)
        self._handles: list = []
        self._watch: set[int] = set()  # ids of the modules whose own attention is recorded (``watch``)
        self._watching = False
        self._watched: dict[int, list] = {}  # image -> [sum of (K, h, w) maps, layers seen]
        self.watched_index: int | None = None  # the step whose attention was recorded

    @classmethod
    def from_spec(cls, unet: nn.Module, spec, columns, boxes, rows=None, layers: str | None = None,
                  size_power: float | None = None, **kw) -> "LayoutGuidance":
        """Built from an ``InitEditSpec``'s layout fields: ``guidance`` (strength), ``guidance_steps``
        (fraction), ``guidance_core`` (the pulled centre of a large box); ``layers`` / ``size_power`` / ``kw``
        (``BoxBias`` fields) override the defaults (ablations)."""
        if "bias" not in kw:
            kw.setdefault("large_core", spec.guidance_core)
            kw.setdefault("size_power", DEFAULT_SIZE_POWER if size_power is None else size_power)
        return cls(unet, select_guided_layers(unet, layers or spec.guidance_layers), spec.guidance,
                   spec.guidance_steps, columns, boxes, rows=rows, units=spec.guidance_units,
                   fraction_of=spec.fraction_of, **kw)

    def watch(self, layers: Sequence[Any]) -> "LayoutGuidance":
        """Record the model's own attention on these layers (mean over them) at the first call after the
        guided fraction: where each box phrase looks once the bias is gone (the heatmaps' third column).
        The layers must be among the guided ones and share one resolution (e.g. the probe's)."""
        self._watch = {id(getattr(layer, "module", layer)) for layer in layers}
        return self

    def watched_maps(self, b: int) -> torch.Tensor | None:
        """(K, h, w) head-averaged attention of image b's box phrases at ``watched_index`` (None: not seen)."""
        found = self._watched.get(b)
        return None if found is None else found[0] / found[1]

    def first_unguided(self, total: int) -> int:
        return math.ceil(self.fraction * max(1, int(total)) - 1e-9)

    @property
    def _guided_images(self) -> list[int]:
        return [b for b, item in enumerate(self.items) if item.columns]

    @property
    def enabled(self) -> bool:
        return self.strength > 0 and self.fraction > 0 and any(item.columns for item in self.items)

    # ------------------------------------------------------------------ lifetime
    def install(self) -> "LayoutGuidance":
        if self._installed or not self.enabled:
            return self
        self._watched, self.watched_index = {}, None  # a second sampling (keep's base first) records anew
        try:
            self._handles.append(self.unet.register_forward_pre_hook(self._on_unet, with_kwargs=True))
            for module in dict.fromkeys(self.modules):  # each module once, in order
                had_own = "forward" in vars(module)
                saved = vars(module)["forward"] if had_own else None
                wrapper = self._wrap(module, module.forward)
                module.forward = wrapper
                self._installed.append((module, saved, had_own, wrapper))
        except BaseException:
            self.remove()
            raise
        return self

    def remove(self) -> None:
        """Restore exactly the forwards found at install (also after an error). A module whose forward was
        patched again on top of ours keeps that patch; our wrapper then passes through (``active`` off)."""
        self.active = False
        installed, self._installed = self._installed, []
        for module, saved, had_own, wrapper in reversed(installed):
            if vars(module).get("forward") is wrapper:
                if had_own:
                    module.forward = saved
                else:
                    del module.forward
        handles, self._handles = self._handles, []
        for handle in handles:
            handle.remove()
        self._rows.reset([])

    # SamplingHooks part protocol
    def enter(self) -> None:
        self.install()

    def leave(self, completed: bool) -> None:
        self.remove()

    def before_call(self, call: Call, cond_rows) -> None:
        # "steps": where the call lies on the step schedule, of the steps; "calls": its index, of the host's budget
        i, total = (call.at, call.steps) if self.fraction_of == "steps" else (call.index, call.total)
        if cond_rows is None:
            self._set_step(i, total, None)
            return
        rows = self.rows if self.rows is not None else range(len(self.items))
        self._set_step(i, total, [cond_rows[r] if r is not None and r < len(cond_rows) else None for r in rows])

    # ------------------------------------------------------------------ steps
    def guided_at(self, i: float, total: int) -> bool:
        return self.enabled and i < self.fraction * max(1, int(total))

    def _set_step(self, i: float, total: int, conds) -> None:
        """Before a model call at step i of total: guidance is on while i < fraction * total."""
        self.active = bool(self._installed) and conds is not None and self.guided_at(i, total)
        self._watching = (bool(self._installed) and conds is not None and bool(self._watch) and self.enabled
                          and not self._watched and self.first_unguided(total) <= i < total)
        if self._watching:
            self.watched_index = int(i)
        self._rows.reset(conds if self.active or self._watching else [])

    # ------------------------------------------------------------------ the wrapper
    def _on_unet(self, module, args, kwargs):
        x = args[0] if args else kwargs.get("x")
        if isinstance(x, torch.Tensor) and x.dim() == 4:
            self._latent_hw = (int(x.shape[-2]), int(x.shape[-1]))

    def _wrap(self, module: nn.Module, current):
        guidance = self

        def forward(*args, **kwargs):
            watching = guidance._watching and id(module) in guidance._watch
            if not guidance.active and not watching:
                return current(*args, **kwargs)
            x = args[0] if args else kwargs.get("x")
            context = kwargs["context"] if "context" in kwargs else (args[1] if len(args) > 1 else None)
            matched = guidance._rows.match(context, guidance._guided_images) if isinstance(context, torch.Tensor) else []
            if not matched or not isinstance(x, torch.Tensor):
                return current(*args, **kwargs)
            stash: dict[str, torch.Tensor] = {}
            handles = []
            try:
                for key in ("q", "k", "v"):
                    projection = getattr(module, f"to_{key}", None)
                    if isinstance(projection, nn.Module):
                        handles.append(projection.register_forward_hook(attention.first_projection_hook(stash, key, x, context)))
                out = current(*args, **kwargs)
            finally:
                for handle in handles:
                    handle.remove()
            return guidance._apply(module, out, x, context, stash, matched)

        forward.__wrapped__ = current
        forward._initedit_guidance = self
        return forward

    def guide_output(self, module: nn.Module, out: torch.Tensor, x: torch.Tensor, context) -> torch.Tensor:
        """``out`` of ``module``'s attention on (x, context) with this step's guidance change added, or ``out``
        itself when guidance is off now or no row of ``context`` is a guided image's conditioning.

        For hosts whose attention does not go through ``module.forward`` (e.g. a Forge attn2 *replace*
        patch): call it on the replacement's output; q / k / v are recomputed with the module's projections.
        At the watched call (``watch``) it records the attention instead and returns ``out``."""
        watching = self._watching and id(module) in self._watch
        if ((not self.active and not watching) or not isinstance(x, torch.Tensor)
                or not isinstance(context, torch.Tensor)
                or not any(module is m for m in self.modules)):  # only the layers this guidance guides
            return out
        matched = self._rows.match(context, self._guided_images)
        return self._apply(module, out, x, context, {}, matched) if matched else out

    def _apply(self, module, out, x, context, stash, matched) -> torch.Tensor:
        """A guided call: ``out`` plus the change; the watched call: ``out``, its attention recorded."""
        if self.active:
            return self._add_delta(module, out, x, context, stash, matched)
        self._record(module, x, context, stash, matched)
        return out

    @torch.no_grad()
    def _record(self, module, x, context, stash, matched) -> None:
        """Add this layer's attention of each matched image's box phrases to the watched maps."""
        q, k = stash.get("q"), stash.get("k")
        if q is None or k is None:
            q, k = module.to_q(x), module.to_k(context)
        h, w = attention.infer_hw(x.shape[1], self._latent_hw)
        for j, b in matched:
            item = self.items[b]
            probs = attention.probabilities_from_qk(q[j:j + 1], k[j:j + 1] if k.shape[0] > 1 else k,
                                                    int(module.heads), attention.attention_scale(module),
                                                    item.columns, self.query_chunk)[0]  # (n, C)
            index = {c: i for i, c in enumerate(item.columns)}
            maps = torch.stack([probs[:, [index[p] for p in positions]].mean(dim=1) if positions
                                else probs.new_zeros(probs.shape[0]) for positions in item.positions])
            maps = maps.reshape(len(item.positions), h, w).cpu()
            seen = self._watched.get(b)
            if seen is None or seen[0].shape != maps.shape:
                self._watched[b] = [maps, 1]
            else:
                seen[0] += maps
                seen[1] += 1

    @torch.no_grad()
    def _add_delta(self, module, out, x, context, stash, matched):
        idx = torch.tensor([j for j, _ in matched], device=x.device)
        q, k, v = stash.get("q"), stash.get("k"), stash.get("v")
        if q is None or k is None or v is None:  # the forward did not call the projections as modules
            q, k, v = module.to_q(x), module.to_k(context), module.to_v(context)
        heads = int(module.heads)
        scale = attention.attention_scale(module)
        n = x.shape[1]
        h, w = attention.infer_hw(n, self._latent_hw)
        rows = [j for j, _ in matched]
        qr = q[idx]
        kr = k[idx] if k.shape[0] > 1 else k.expand(len(rows), -1, -1)
        vr = v[idx] if v.shape[0] > 1 else v.expand(len(rows), -1, -1)
        chunk = max(1, (self.query_chunk * 4) // len(rows))  # at most 4x the memory of one row's chunk
        if self.units == "share":
            targets = [self._targets(b, h, w, x.device) for _, b in matched]
            width = max(t[0].shape[1] for t in targets)
            boxes = max(t[0].shape[0] for t in targets)
            cols = torch.zeros(len(rows), width, dtype=torch.long, device=x.device)  # padding: column 0, no box
            members = torch.zeros(len(rows), boxes, width, dtype=torch.float32, device=x.device)
            floor = torch.zeros(len(rows), n, boxes, dtype=torch.float32, device=x.device)
            keep = torch.ones(len(rows), n, boxes, dtype=torch.float32, device=x.device)
            for r, (mm, fl, kp, cc) in enumerate(targets):
                cols[r, :cc.numel()] = cc
                members[r, :mm.shape[0], :mm.shape[1]] = mm
                floor[r, :, :mm.shape[0]] = fl
                keep[r, :, :mm.shape[0]] = kp
            delta = attention_delta(qr, kr, vr, heads, scale, cols, None, chunk,
                                    share=(members, floor, keep)).to(out.dtype)
        else:
            biases = [self._bias(b, h, w, x.device) for _, b in matched]
            width = max(bias.shape[1] for bias, _ in biases)
            cols = torch.zeros(len(rows), width, dtype=torch.long, device=x.device)  # padding: column 0, bias 0
            bias = torch.zeros(len(rows), n, width, dtype=torch.float32, device=x.device)
            for r, (bb, cc) in enumerate(biases):
                cols[r, :cc.numel()] = cc
                bias[r, :, :cc.numel()] = bb
            delta = attention_delta(qr, kr, vr, heads, scale, cols, bias, chunk).to(out.dtype)
        proj = module.to_out[0] if isinstance(module.to_out, nn.Sequential) else module.to_out
        change = proj(delta) - proj(torch.zeros_like(delta[:1, :1]))
        out = out.clone()
        out[idx] += change
        self.calls_guided += 1
        return out

    @torch.no_grad()
    def phrase_shares(self, module: nn.Module, x: torch.Tensor, context: torch.Tensor, b: int,
                      hw: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Image b's box phrases' share of the attention at each query of ``module`` on one row (x (1, N, C),
        context (1, T, D)), mean over heads, without and with this guidance's bias: two (K, N) float32 tensors
        (for measurements; the guided forward never materialises these probabilities)."""
        q, k = module.to_q(x).float(), module.to_k(context).float()
        heads, n = int(module.heads), x.shape[1]
        h, w = hw or attention.infer_hw(n, self._latent_hw)
        qh = q.reshape(1, n, heads, -1).transpose(1, 2)
        kh = k.reshape(1, k.shape[1], heads, -1).transpose(1, 2)
        s = torch.matmul(qh, kh.transpose(-1, -2)) * attention.attention_scale(module)  # (1, H, N, T)
        probs = s.softmax(dim=-1)
        item = self.items[b]
        if self.units == "share":
            members, floor, keep, cols = self._targets(b, h, w, x.device)
            colbias = share_bias(probs[..., cols], members[None], floor[None, None], keep[None, None])
        else:
            bias, cols = self._bias(b, h, w, x.device)
            members = torch.zeros(len(item.positions), len(item.columns), device=x.device)
            for k_, positions in enumerate(item.positions):
                members[k_, [item.columns.index(p) for p in positions]] = 1.0
            colbias = bias[None, None].expand(1, heads, n, -1)
        after = s.clone()
        after[..., cols] += colbias
        after = after.softmax(dim=-1)
        share = lambda p: torch.einsum("hnc,kc->kn", p[0][..., cols], members) / heads  # noqa: E731
        return share(probs), share(after)

    def _targets(self, b: int, h: int, w: int, device) -> tuple:
        """Image b's "share" targets at a layer of h x w cells: members (K, C), floor (h*w, K), keep (h*w, K),
        columns (C,) (see ``attention_delta``)."""
        key = ("share", b, h, w, str(device))
        if key not in self._bias_cache:
            item = self.items[b]
            index = {c: i for i, c in enumerate(item.columns)}
            k_boxes = len(item.positions)
            members = torch.zeros(k_boxes, len(item.columns))
            floor = torch.zeros(h * w, k_boxes)
            keep = torch.ones(h * w, k_boxes)
            tau = self.strength / 100.0
            for k, (positions, box) in enumerate(zip(item.positions, item.boxes)):
                for p in positions:
                    members[k, index[p]] = 1.0
                rest = (1.0 - tau) ** self.box_bias.weight(box)  # what the box leaves to the rest of the prompt
                sign = self.box_bias.sign(box, h, w)
                floor[:, k] = torch.where(sign > 0, sign * (1.0 - rest), 0.0)
                keep[:, k] = torch.where(sign < 0, rest ** (-sign), 1.0)
            self._bias_cache[key] = tuple(t.to(device) for t in (members, floor, keep)) + (
                torch.tensor(item.columns, dtype=torch.long, device=device),)
        return self._bias_cache[key]

    def _bias(self, b: int, h: int, w: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(h*w, C) additive bias for image b's phrase columns at a layer of h x w cells, and the columns."""
        key = (b, h, w, str(device))
        if key not in self._bias_cache:
            item = self.items[b]
            bias = torch.zeros(h * w, len(item.columns), dtype=torch.float32)
            for c, pairs in enumerate(item.signs):
                for k, weight in pairs:
                    bias[:, c] += self.box_bias.column(item.boxes[k], self.strength * weight, h, w)
            self._bias_cache[key] = (bias.to(device), torch.tensor(item.columns, dtype=torch.long, device=device))
        return self._bias_cache[key]
