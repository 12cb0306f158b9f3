"""A small UNet built and named like ldm's openaimodel.UNetModel (SD1.x layout), for tests and benchmarks.

Module names match the real thing (``input_blocks.8.1.transformer_blocks.0.attn2``), the parents are
SpatialTransformer-like, downsampling goes through a class named ``Downsample``, and cross-attention
uses torch's SDPA, so, as in the WebUI, the probabilities are never materialised by the forward.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class CrossAttention(nn.Module):
    def __init__(self, query_dim, context_dim=None, heads=8, dim_head=40):
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
        b, n, _ = x.shape
        q, k, v = self.to_q(x), self.to_k(context), self.to_v(context)
        q, k, v = (t.reshape(b, t.shape[1], self.heads, -1).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, heads, dim_head, context_dim):
        super().__init__()
        self.attn1 = CrossAttention(dim, None, heads, dim_head)
        self.attn2 = CrossAttention(dim, context_dim, heads, dim_head)
        self.ff = nn.Sequential(nn.Linear(dim, dim * 4), nn.GELU(), nn.Linear(dim * 4, dim))
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x, context=None):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context=context) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    def __init__(self, channels, heads, dim_head, context_dim, depth=1):
        super().__init__()
        inner = heads * dim_head
        self.norm = nn.GroupNorm(min(32, channels), channels)
        self.proj_in = nn.Linear(channels, inner)
        self.transformer_blocks = nn.ModuleList(BasicTransformerBlock(inner, heads, dim_head, context_dim) for _ in range(depth))
        self.proj_out = nn.Linear(inner, channels)

    def forward(self, x, context=None):
        b, c, h, w = x.shape
        x_in = x
        x = self.norm(x).permute(0, 2, 3, 1).reshape(b, h * w, c)  # row-major, as A1111's override
        x = self.proj_in(x)
        for block in self.transformer_blocks:
            x = block(x, context=context)
        x = self.proj_out(x).reshape(b, h, w, c).permute(0, 3, 1, 2)
        return x + x_in


class ResBlock(nn.Module):
    def __init__(self, channels, out_channels, emb_dim):
        super().__init__()
        self.in_layers = nn.Sequential(nn.GroupNorm(min(32, channels), channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, out_channels))
        self.out_layers = nn.Sequential(nn.GroupNorm(min(32, out_channels), out_channels), nn.SiLU(), nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip_connection = nn.Identity() if channels == out_channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x, emb):
        h = self.in_layers(x) + self.emb_layers(emb)[:, :, None, None]
        return self.skip_connection(x) + self.out_layers(h)


class Downsample(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x, emb=None, context=None):
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x, emb=None, context=None, size=None):
        return self.conv(F.interpolate(x, size=size, mode="nearest") if size else F.interpolate(x, scale_factor=2, mode="nearest"))


class TimestepEmbedSequential(nn.Sequential):
    def forward(self, x, emb, context=None, size=None):
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            elif isinstance(layer, Upsample):
                x = layer(x, size=size)
            else:
                x = layer(x)
        return x


def timestep_embedding(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half).to(t.device)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class UNetModel(nn.Module):
    """SD1.x block layout: 4 levels, attention at levels 0-2, 12 input / 12 output blocks."""

    def __init__(self, in_channels=4, model_channels=32, channel_mult=(1, 2, 4, 4), heads=8, context_dim=32,
                 attention_levels=(0, 1, 2), num_res_blocks=2):
        super().__init__()
        emb_dim = model_channels * 4
        self.model_channels = model_channels
        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(in_channels, model_channels, 3, padding=1))])
        chans = [model_channels]
        ch = model_channels
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [ResBlock(ch, model_channels * mult, emb_dim)]
                ch = model_channels * mult
                if level in attention_levels:
                    layers.append(SpatialTransformer(ch, heads, ch // heads, context_dim))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                chans.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(TimestepEmbedSequential(Downsample(ch)))
                chans.append(ch)
        self.middle_block = TimestepEmbedSequential(ResBlock(ch, ch, emb_dim), SpatialTransformer(ch, heads, ch // heads, context_dim), ResBlock(ch, ch, emb_dim))
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                layers = [ResBlock(ch + chans.pop(), model_channels * mult, emb_dim)]
                ch = model_channels * mult
                if level in attention_levels:
                    layers.append(SpatialTransformer(ch, heads, ch // heads, context_dim))
                if level and i == num_res_blocks:
                    layers.append(Upsample(ch))
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        self.out = nn.Sequential(nn.GroupNorm(min(32, ch), ch), nn.SiLU(), nn.Conv2d(ch, in_channels, 3, padding=1))

    def forward(self, x, timesteps=None, context=None, control=None, **kwargs):
        emb = self.embed(timesteps)
        h, hs = self.encode(x, emb, context)
        return self.decode(h, hs, emb, context, control)

    def embed(self, timesteps):
        return self.time_embed(timestep_embedding(timesteps, self.model_channels))

    def encode(self, x, emb, context=None):
        """The input blocks and the middle block: (h, the skip connections)."""
        hs = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb, context)
            hs.append(h)
        return self.middle_block(h, emb, context), hs

    def decode(self, h, hs, emb, context=None, control=None):
        """The output blocks. ``control``: (one residual per skip connection, one for the middle), added as
        ControlNet adds them (sd-webui-controlnet's UNet forward)."""
        hs = list(hs)
        res, mid = (list(control[0]), control[1]) if control is not None else (None, None)
        if mid is not None:
            h = h + mid
        for block in self.output_blocks:
            skip = hs.pop()
            if res is not None:
                skip = skip + res.pop()
            if h.shape[-2:] != skip.shape[-2:]:
                h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = block(torch.cat([h, skip], dim=1), emb, context)
        return self.out(h)


def tiny_unet(seed: int = 0) -> UNetModel:
    """The test UNet every unit test uses: SD1.x layout, 32 channels, context 32, weights from ``seed``."""
    torch.manual_seed(seed)
    return UNetModel(model_channels=32, context_dim=32).eval()


def hook_count(model: nn.Module) -> int:
    """Forward (pre-)hooks left on any module of ``model`` (0 after every InitEdit call)."""
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())
