"""Small pixel-space UNet (32x32x3) with ldm-style naming, and a word-level text encoder.

Module names follow CompVis ldm so InitEdit's hooks work unchanged:
`input_blocks.N.0` ResBlocks, `input_blocks.N.1` SpatialTransformers with
`transformer_blocks.0.attn1/attn2`, `Downsample` modules, `middle_block`, `output_blocks`.
Levels: 32x32, 16x16, 8x8 (the "paper" probe level, like SD1's 16x16 of a 64x64 latent), 4x4.
Cross-attention sits at 8x8 (input 5, 6; output 2, 3, 4) and 4x4 (middle) only, to keep CPU training cheap.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .tokenizer import CHUNK, WORDS, Tokenizer


def _gn(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(8, ch)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class CrossAttention(nn.Module):
    def __init__(self, query_dim: int, context_dim: int | None = None, heads: int = 4, dim_head: int = 16):
        super().__init__()
        inner = heads * dim_head
        context_dim = context_dim or query_dim
        self.heads = heads
        self.scale = dim_head ** -0.5
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(0.0))

    def forward(self, x, context=None, mask=None):
        context = x if context is None else context
        h = self.heads
        q, k, v = self.to_q(x), self.to_k(context), self.to_v(context)
        b, n, _ = q.shape
        q, k, v = (u.reshape(b, u.shape[1], h, -1).transpose(1, 2) for u in (q, k, v))
        sim = torch.einsum("bhid,bhjd->bhij", q, k) * self.scale
        if mask is not None:
            sim = sim.masked_fill(~mask.bool().reshape(b, 1, 1, -1), -torch.finfo(sim.dtype).max)
        out = torch.einsum("bhij,bhjd->bhid", sim.softmax(dim=-1), v)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 2):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, dim * mult), nn.GELU(), nn.Linear(dim * mult, dim))

    def forward(self, x):
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim: int, context_dim: int, heads: int):
        super().__init__()
        dh = dim // heads
        self.attn1 = CrossAttention(dim, None, heads, dh)
        self.ff = FeedForward(dim)
        self.attn2 = CrossAttention(dim, context_dim, heads, dh)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x, context=None):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context=context) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    def __init__(self, ch: int, context_dim: int, heads: int = 4):
        super().__init__()
        self.norm = _gn(ch)
        self.proj_in = nn.Conv2d(ch, ch, 1)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(ch, context_dim, heads)])
        self.proj_out = nn.Conv2d(ch, ch, 1)

    def forward(self, x, context=None):
        b, c, h, w = x.shape
        x_in = x
        x = self.proj_in(self.norm(x)).flatten(2).transpose(1, 2)
        for blk in self.transformer_blocks:
            x = blk(x, context=context)
        x = x.transpose(1, 2).reshape(b, c, h, w)
        return self.proj_out(x) + x_in


class ResBlock(nn.Module):
    def __init__(self, ch: int, emb_dim: int, out_ch: int | None = None):
        super().__init__()
        out_ch = out_ch or ch
        self.in_layers = nn.Sequential(_gn(ch), nn.SiLU(), nn.Conv2d(ch, out_ch, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, out_ch))
        self.out_layers = nn.Sequential(_gn(out_ch), nn.SiLU(), nn.Dropout(0.0), nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip_connection = nn.Identity() if out_ch == ch else nn.Conv2d(ch, out_ch, 1)

    def forward(self, x, emb):
        h = self.in_layers(x) + self.emb_layers(emb)[:, :, None, None]
        return self.skip_connection(x) + self.out_layers(h)


class Downsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.op = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x):
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, ch: int, use_conv: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1) if use_conv else nn.Identity()

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class TimestepEmbedSequential(nn.Sequential):
    def forward(self, x, emb, context=None):
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            else:
                x = layer(x)
        return x


class UNet(nn.Module):
    """ldm-style UNet. Widths per level (32, 16, 8, 4 px) given by `chans`."""

    def __init__(self, chans=(16, 32, 64, 96), context_dim: int = 64, emb_dim: int = 128, heads: int = 4):
        super().__init__()
        c0, c1, c2, c3 = chans
        self.model_channels = c0
        self.time_embed = nn.Sequential(nn.Linear(c0, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        E, D, T = emb_dim, context_dim, TimestepEmbedSequential
        st = lambda c: SpatialTransformer(c, D, heads)  # noqa: E731
        self.input_blocks = nn.ModuleList([
            T(nn.Conv2d(3, c0, 3, padding=1)),  # 0   32px
            T(ResBlock(c0, E)),                 # 1
            T(Downsample(c0)),                  # 2 -> 16px
            T(ResBlock(c0, E, c1)),            # 3
            T(Downsample(c1)),                  # 4 -> 8px
            T(ResBlock(c1, E, c2), st(c2)),     # 5
            T(ResBlock(c2, E), st(c2)),         # 6  <- "paper" probe layer
            T(Downsample(c2)),                  # 7 -> 4px
            T(ResBlock(c2, E, c3)),             # 8
        ])
        self.middle_block = T(ResBlock(c3, E), st(c3), ResBlock(c3, E))
        self.output_blocks = nn.ModuleList([
            T(ResBlock(c3 + c3, E, c3)),                           # 0  4px
            T(ResBlock(c3 + c2, E, c3), Upsample(c3)),             # 1  -> 8px
            T(ResBlock(c3 + c2, E, c2), st(c2)),                   # 2
            T(ResBlock(c2 + c2, E, c2), st(c2)),                   # 3
            T(ResBlock(c2 + c1, E, c2), st(c2), Upsample(c2)),     # 4  -> 16px
            T(ResBlock(c2 + c1, E, c1)),                           # 5
            T(ResBlock(c1 + c0, E, c1), Upsample(c1, use_conv=False)),  # 6  -> 32px
            T(ResBlock(c1 + c0, E, c0)),                           # 7
            T(ResBlock(c0 + c0, E, c0)),                           # 8
        ])
        self.out = nn.Sequential(_gn(c0), nn.SiLU(), nn.Conv2d(c0, 3, 3, padding=1))

    def forward(self, x, timesteps, context=None, **kwargs):
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels))
        hs, h = [], x
        for blk in self.input_blocks:
            h = blk(h, emb, context)
            hs.append(h)
        h = self.middle_block(h, emb, context)
        for blk in self.output_blocks:
            h = blk(torch.cat([h, hs.pop()], dim=1), emb, context)
        return self.out(h)


class TextEncoder(nn.Module):
    """Token + position embeddings and causal self-attention layers -> (B, 77, D)."""

    def __init__(self, dim: int = 64, layers: int = 2, heads: int = 4):
        super().__init__()
        self.token_embedding = nn.Embedding(len(WORDS), dim)
        self.position_embedding = nn.Parameter(torch.zeros(CHUNK, dim))
        self.layers = nn.ModuleList(_CausalLayer(dim, heads) for _ in range(layers))
        self.final_layer_norm = nn.LayerNorm(dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(ids) + self.position_embedding[None, : ids.shape[1]]
        for layer in self.layers:
            x = layer(x)
        return self.final_layer_norm(x)


class _CausalLayer(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.ln2(x))


class ToyModel(nn.Module):
    """UNet + text encoder + tokenizer. `encode(captions)` -> (B, 77, D) conditioning."""

    def __init__(self, **unet_kw):
        super().__init__()
        self.text = TextEncoder(dim=unet_kw.get("context_dim", 64))
        self.unet = UNet(**unet_kw)
        self.tokenizer = Tokenizer()

    def encode(self, captions: list[str]) -> torch.Tensor:
        ids = torch.tensor([self.tokenizer.chunk_ids(c) for c in captions], dtype=torch.long)
        return self.text(ids)


DEFAULT_WEIGHTS = __file__.rsplit("/", 1)[0] + "/weights/toy.safetensors"


def load(path: str | None = None) -> ToyModel:
    """The bundled trained model (fp16 on disk, fp32 in memory), in eval mode."""
    from safetensors.torch import load_file

    m = ToyModel()
    sd = load_file(path or DEFAULT_WEIGHTS)
    m.load_state_dict({k: v.float() for k, v in sd.items()})
    return m.eval().requires_grad_(False)
