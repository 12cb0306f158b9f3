"""Images of each phrase's attention: on the initial noise before and after the edit (the probe), and, when
layout guidance ran, the model's own attention at the first step after the guided ones."""
from __future__ import annotations

from typing import Sequence

import torch

PALETTE = [(230, 60, 60), (60, 140, 230), (60, 190, 90), (230, 180, 40), (170, 80, 210), (40, 200, 200)]


def render(maps_before: torch.Tensor, maps_after: torch.Tensor, boxes: Sequence[Sequence[float]],
           phrases: Sequence[str], size: tuple[int, int], shares: Sequence[Sequence[float]] = (),
           maps_guided: torch.Tensor | None = None, guided_label: str = "after guidance"):
    """One PIL image: a row per phrase, columns "before", "after" and (with ``maps_guided``) ``guided_label``;
    ``size`` = (width, height) per tile; ``shares[k][col]``: box k's attention share shown in column col."""
    from PIL import Image, ImageDraw

    width, height = size
    columns = [("before", maps_before), ("after", maps_after)]
    if maps_guided is not None:
        columns.append((guided_label, maps_guided))
    rows = max(1, len(phrases))
    label_h = 14
    sheet = Image.new("RGB", (len(columns) * width, rows * (height + label_h)), (16, 16, 16))
    draw = ImageDraw.Draw(sheet)
    for k, phrase in enumerate(phrases):
        color = PALETTE[k % len(PALETTE)]
        for col, (label, maps) in enumerate(columns):
            tile = _tile(maps[k], width, height)
            x0, y0 = col * width, k * (height + label_h) + label_h
            sheet.paste(tile, (x0, y0))
            bx0, by0, bx1, by1 = boxes[k]
            draw.rectangle([x0 + bx0 * width, y0 + by0 * height, x0 + bx1 * width - 1, y0 + by1 * height - 1],
                           outline=color, width=2)
            share = f" {shares[k][col]:.0%} in box" if k < len(shares) and col < len(shares[k]) else ""
            draw.text((x0 + 3, y0 - label_h + 1), f"{label}: {phrase}{share}", fill=color)
    return sheet


def _tile(m: torch.Tensor, width: int, height: int):
    from PIL import Image

    m = m.detach().float().cpu()
    m = (m - m.min()) / (m.max() - m.min()).clamp(min=1e-12)
    r = (m * 255).clamp(0, 255).to(torch.uint8)
    rgb = torch.stack([r, (r.float() * 0.6).to(torch.uint8), (255 - r.float()).mul(0.5).to(torch.uint8)], dim=-1)
    return Image.fromarray(rgb.numpy(), "RGB").resize((width, height), Image.NEAREST)
