"""Capture cross-attention probabilities of an ldm/sgm-style UNet through module hooks.

The hooks compute softmax(q k^T * scale) themselves, for the wanted token columns only, because the
installed attention forward (SDP, xformers, ...) never materialises the probabilities; q and k are the
ones the forward itself projected (kept by hooks on ``to_q`` / ``to_k``). The hooks never replace a
``forward`` (other extensions patch those), never change an output, and are always removed, on error too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn

LEVEL_OF_PAPER_LAYER = 2  # SD1.x input_blocks.8: latent / 4 (16x16 at 512 px)


class StopProbe(BaseException):
    """Raised from a hook once the last needed layer ran; swallowed by capture_cross_attention.

    A BaseException, so that ``except Exception`` error handlers between the hook and the probe (e.g.
    ControlNet's, which moves its models to the CPU on any error) treat the abort as what it is.
    """


@dataclass(frozen=True)
class CrossAttentionLayer:
    name: str
    module: nn.Module
    parent: str | None  # the SpatialTransformer-like module that knows the spatial size
    path: str  # "input" | "middle" | "output"
    level: int  # number of 2x downsamplings above the latent


def find_cross_attention(unet: nn.Module) -> list[CrossAttentionLayer]:
    """Every ``...attn2`` cross-attention module in forward order, with its path and level."""
    found: list[tuple[str, nn.Module, str, int]] = []
    down = up = 0
    for name, module in unet.named_modules():
        cls = type(module).__name__
        path = _path_of(name)
        if cls == "Downsample" and path == "input":
            down += 1
        elif cls == "Upsample" and path == "output":
            up += 1
        elif name.endswith("attn2") and all(hasattr(module, a) for a in ("to_q", "to_k", "heads")):
            level = down if path == "input" else (down - up if path == "output" else down)
            found.append((name, module, path, level))
    layers = []
    for name, module, path, level in found:
        parent = name.split(".transformer_blocks.")[0] if ".transformer_blocks." in name else None
        layers.append(CrossAttentionLayer(name, module, parent, path, max(level, 0)))
    return layers


def _path_of(name: str) -> str:
    if name.startswith("input_blocks") or ".input_blocks." in name:
        return "input"
    if name.startswith("middle_block") or ".middle_block" in name:
        return "middle"
    if name.startswith("output_blocks") or ".output_blocks." in name:
        return "output"
    return "other"


def select_layers(layers: Sequence[CrossAttentionLayer], choice: str = "paper",
                  level: int = LEVEL_OF_PAPER_LAYER) -> list[CrossAttentionLayer]:
    """Probe layers on the down path at ``level`` (the nearest level present if that one is missing).

    "paper": the last transformer at that level (SD1: input_blocks.8.1, as in the authors' code), all
    its transformer blocks; "level": every down-path cross-attention at that level.
    """
    down = [layer for layer in layers if layer.path == "input"]
    if not down:
        raise ValueError("no cross-attention layer named '...attn2' on the UNet's input path")
    levels = sorted({layer.level for layer in down})
    chosen = min(levels, key=lambda lv: (abs(lv - level), -lv))
    at_level = [layer for layer in down if layer.level == chosen]
    if choice == "level":
        return at_level
    if choice == "paper":
        last_parent = at_level[-1].parent
        return [layer for layer in at_level if layer.parent == last_parent] if last_parent else at_level[-1:]
    raise ValueError(f"layers: unknown choice {choice!r}")


@dataclass
class CaptureResult:
    """What a capture recorded: maps[name] (B, h, w, K) float32 head-averaged probabilities of the columns."""

    columns: list[int]
    maps: dict[str, torch.Tensor] = field(default_factory=dict)
    latent_hw: tuple[int, int] | None = None
    stopped_early: bool = False


def attention_scale(module: nn.Module) -> float:
    """The module's softmax scale: ``scale`` (ldm/sgm) or dim_head ** -0.5 (Forge's CrossAttention has none)."""
    scale = getattr(module, "scale", None)
    if scale is not None:
        return float(scale)
    dim_head = getattr(module, "dim_head", None)
    if dim_head is None:
        dim_head = module.to_q.out_features // int(module.heads)
    return float(dim_head) ** -0.5


class AttentionCapture:
    """Records the cross-attention of ``layers`` during one UNet call; a context manager (or ``install`` /
    ``remove``). The result, ``self.result``, is a plain value, filled in while the UNet runs.

    Per layer: a pre-hook on the SpatialTransformer-like parent records the spatial size; forward hooks on
    ``to_q`` / ``to_k`` keep the projections the forward itself made; a forward hook on ``attn2`` turns them
    into probabilities (``observe``). With ``stop_early`` the UNet is aborted by ``StopProbe`` after the last
    layer; leaving the ``with`` block swallows it. A host whose attention runs outside ``attn2.forward``
    (e.g. a patch API) can call ``observe`` itself with the q / k it sees.
    """

    def __init__(self, unet: nn.Module, layers: Sequence[CrossAttentionLayer], columns: Sequence[int],
                 stop_early: bool = True, query_chunk: int = 4096):
        self.unet = unet
        self.layers = list(layers)
        self.stop_early = stop_early
        self.query_chunk = query_chunk
        self.result = CaptureResult(columns=list(columns))
        wanted = {layer.name for layer in self.layers}
        self._last = next((layer.name for layer in reversed(find_cross_attention(unet)) if layer.name in wanted), None)
        self._sizes: dict[str, tuple[int, int]] = {}  # parent name -> (h, w) of the current call
        self._stash: dict[str, dict] = {layer.name: {} for layer in self.layers}  # this call's q / k per layer
        self._unet_input: torch.Tensor | None = None  # the x the UNet was called with
        self._main_pass = True  # False while a wrapper runs the blocks on another input first
        self._handles: list = []

    # ---------------------------------------------------------------- lifetime
    def install(self) -> "AttentionCapture":
        if self._handles:
            return self
        try:
            self._hook(self.unet.register_forward_pre_hook(self._on_unet, with_kwargs=True))
            modules = dict(self.unet.named_modules())
            first_block = modules.get("input_blocks.0")
            if first_block is not None:  # tell the pass over x_T from a pre-pass over another input
                self._hook(first_block.register_forward_pre_hook(self._on_first_block, with_kwargs=True))
            parents = set()
            for layer in self.layers:
                if layer.parent and layer.parent in modules and layer.parent not in parents:
                    parents.add(layer.parent)
                    self._hook(modules[layer.parent].register_forward_pre_hook(self._size_hook(layer.parent),
                                                                               with_kwargs=True))
                stash = self._stash[layer.name]
                self._hook(layer.module.register_forward_pre_hook(lambda m, a, stash=stash: stash.clear()))
                for key in ("q", "k"):
                    projection = getattr(layer.module, f"to_{key}", None)
                    if isinstance(projection, nn.Module):
                        self._hook(projection.register_forward_hook(first_projection_hook(stash, key)))
                self._hook(layer.module.register_forward_hook(self._attention_hook(layer), with_kwargs=True))
        except BaseException:
            self.remove()
            raise
        return self

    def remove(self) -> None:
        handles, self._handles = self._handles, []
        for handle in handles:
            handle.remove()
        self._unet_input = None
        for stash in self._stash.values():
            stash.clear()

    def __enter__(self) -> CaptureResult:
        self.install()
        return self.result

    def __exit__(self, kind, error, trace) -> bool:
        self.remove()
        if kind is not None and issubclass(kind, StopProbe):
            self.result.stopped_early = True
            return True
        return False

    def _hook(self, handle) -> None:
        self._handles.append(handle)

    # ---------------------------------------------------------------- recording
    def observe(self, layer: CrossAttentionLayer, q: torch.Tensor, k: torch.Tensor, heads: int, scale: float) -> None:
        """Probabilities of the columns from projected q (B, N, H*d) and k (B|1, T, H*d); may raise StopProbe."""
        probs = probabilities_from_qk(q, k, heads, scale, self.result.columns, self.query_chunk)
        h, w = self._sizes.get(layer.parent) or infer_hw(probs.shape[1], self.result.latent_hw)
        self.result.maps[layer.name] = probs.reshape(probs.shape[0], h, w, probs.shape[2])
        if self.stop_early and layer.name == self._last:
            raise StopProbe(layer.name)

    def _on_unet(self, module, args, kwargs):
        x = _first_tensor(args, kwargs, "x")
        if x is not None and x.dim() == 4 and self.result.latent_hw is None:
            self.result.latent_hw = (int(x.shape[-2]), int(x.shape[-1]))
            self._unet_input = x

    def _on_first_block(self, module, args, kwargs):
        """ControlNet's reference-only runs the UNet's blocks on a noised reference image before the real
        input, inside the same call; only the pass whose input is the probed noise counts."""
        x, ref = _first_tensor(args, kwargs, "x"), self._unet_input
        if x is None or ref is None:
            return
        c = min(x.shape[1], ref.shape[1])
        self._main_pass = x is ref or (x.shape[0] == ref.shape[0] and x.shape[-2:] == ref.shape[-2:]
                                       and torch.equal(x[:, :c], ref[:, :c]))

    def _size_hook(self, parent: str):
        def hook(module, args, kwargs):
            x = _first_tensor(args, kwargs, "x")
            if x is not None and x.dim() == 4:
                self._sizes[parent] = (int(x.shape[-2]), int(x.shape[-1]))
        return hook


    def _attention_hook(self, layer: CrossAttentionLayer):
        """q and k from the module's own forward (LoRA, hypernetworks and patched forwards honoured, nothing
        projected twice); recomputed from the inputs when the forward did not call to_q / to_k as modules.
        The output is returned untouched."""
        stash = self._stash[layer.name]

        def hook(module, args, kwargs, output):
            x = _first_tensor(args, kwargs, "x")
            context = kwargs.get("context", args[1] if len(args) > 1 else None)
            q, k = stash.pop("q", None), stash.pop("k", None)
            if x is None or context is None or not self._main_pass:
                return None
            if q is None or k is None or q.shape[:-1] != x.shape[:-1] or k.shape[1] != context.shape[1]:
                q, k = module.to_q(x), module.to_k(context)
            with torch.no_grad():
                self.observe(layer, q, k, int(module.heads), attention_scale(module))
            return None
        return hook


def capture_cross_attention(unet: nn.Module, layers: Sequence[CrossAttentionLayer], columns: Sequence[int],
                            stop_early: bool = True, query_chunk: int = 4096) -> AttentionCapture:
    """``with capture_cross_attention(...) as result:`` run the UNet once; ``result.maps`` is filled in."""
    return AttentionCapture(unet, layers, columns, stop_early, query_chunk)


def _first_tensor(args, kwargs, key):
    x = args[0] if args else kwargs.get(key)
    return x if isinstance(x, torch.Tensor) else None


@torch.no_grad()
def attention_probabilities(module: nn.Module, x: torch.Tensor, context: torch.Tensor, columns: Sequence[int],
                            chunk: int = 4096) -> torch.Tensor:
    """softmax(q k^T * scale) over all tokens, head-averaged, for ``columns`` only: (B, N, K) fp32.

    to_q / to_k are called as modules so that LoRA patches on Linear layers apply.
    """
    return probabilities_from_qk(module.to_q(x), module.to_k(context), int(module.heads), attention_scale(module),
                                 columns, chunk)


@torch.no_grad()
def probabilities_from_qk(q: torch.Tensor, k: torch.Tensor, heads: int, scale: float, columns: Sequence[int],
                          chunk: int = 4096) -> torch.Tensor:
    """softmax(q k^T * scale) head-averaged for ``columns``, from projected q (B, N, H*d), k (B|1, T, H*d)."""
    b, n, inner = q.shape
    d = inner // heads
    q = q.float().reshape(b, n, heads, d).transpose(1, 2)  # (B, H, N, d)
    k = k.float().reshape(k.shape[0], k.shape[1], heads, d).transpose(1, 2)  # (B, H, T, d)
    if k.shape[0] != b:  # a context shared across the batch
        k = k.expand(b, -1, -1, -1)
    cols = torch.as_tensor(list(columns), dtype=torch.long, device=q.device)
    if cols.numel() and int(cols.max()) >= k.shape[2]:
        raise IndexError(f"token column {int(cols.max())} is beyond the conditioning length {k.shape[2]}")
    out = torch.empty(b, n, cols.numel(), dtype=torch.float32, device=q.device)
    for start in range(0, n, max(1, chunk)):
        sim = torch.matmul(q[:, :, start:start + chunk], k.transpose(-1, -2)) * scale
        out[:, start:start + chunk] = sim.softmax(dim=-1).index_select(-1, cols).mean(dim=1)
    return out


def first_projection_hook(stash: dict, key: str, x: torch.Tensor | None = None, context: torch.Tensor | None = None):
    """A forward hook for an attention's ``to_q`` / ``to_k`` / ``to_v`` that keeps its first output of the call
    in ``stash[key]`` ("q", "k", "v"): q and k as the module's own forward projected them (LoRA, hypernetworks
    and patched forwards honoured). Given the call's ``x`` / ``context``, only an output of their batch and
    length counts (k / v may have a batch of 1)."""
    def hook(module, args, output):
        if key in stash or not isinstance(output, torch.Tensor) or output.dim() != 3:
            return None
        ref = x if key == "q" else context
        if ref is None or output.shape[:2] == ref.shape[:2] or (
                key != "q" and output.shape[0] == 1 and output.shape[1] == ref.shape[1]):
            stash[key] = output
        return None
    return hook


def infer_hw(n: int, latent_hw: tuple[int, int] | None) -> tuple[int, int]:
    """(h, w) of a layer with n positions: the latent size halved (ceil) until it fits."""
    if latent_hw is None:
        side = int(math.isqrt(n))
        if side * side != n:
            raise ValueError(f"cannot tell the spatial size of a layer with {n} positions")
        return side, side
    h, w = latent_hw
    for _ in range(8):
        if h * w == n:
            return h, w
        h, w = (h + 1) // 2, (w + 1) // 2
    raise ValueError(f"no downsampled size of the latent {latent_hw} has {n} positions")
