"""Which rows of an incoming cross-attention context are a guided image's conditioning.

The host says, before each model call, image b's conditional context this step (``reset``); a layer's call then
brings a batch of context rows (uncond and cond rows, other sub-prompts, in the host's order). Rows are matched
by value (``torch.equal`` after a dtype / device cast), in order: the j-th row equal to image b's conditioning,
with b not yet matched, is image b's. A cheap fingerprint (sums in float64) comes first; ``torch.equal`` only
where it agrees. One match per context object per step (every guided layer sees the same context).
"""
from __future__ import annotations

from typing import Sequence

import torch


class CondRows:
    def __init__(self):
        self.conds: list[torch.Tensor | None] = []
        self._cast: dict = {}
        self._last: tuple | None = None

    def reset(self, conds: Sequence[torch.Tensor | None] | None) -> None:
        """This step's conditioning per image (None: the image is not guided now)."""
        self.conds = list(conds or [])
        self._cast.clear()
        self._last = None

    def match(self, context: torch.Tensor, images: Sequence[int]) -> list[tuple[int, int]]:
        """(batch row, image) pairs of ``context``'s rows that are the conditioning of one of ``images``."""
        if self._last is not None and self._last[0] is context:
            return self._last[1]
        pairs = []
        free = [b for b in images if b < len(self.conds) and self.conds[b] is not None]
        if free:
            rows_fp = context.detach().flatten(1).double().sum(dim=1).cpu()
            conds_fp = {b: self._fingerprint(b, context[0]) for b in free}
            for j in range(context.shape[0]):
                fp = float(rows_fp[j])
                for b in free:
                    close = conds_fp[b] is not None and abs(conds_fp[b] - fp) <= 1e-6 * max(1.0, abs(fp))
                    if close and torch.equal(context[j], self._cond_as(b, context[j])):
                        pairs.append((j, b))
                        free.remove(b)
                        break
        self._last = (context, pairs)
        return pairs

    def _fingerprint(self, b: int, row: torch.Tensor) -> float | None:
        key = ("fp", b, row.dtype, row.device)
        if key not in self._cast:
            cond = self._cond_as(b, row)
            self._cast[key] = None if cond is None else float(cond.double().sum())
        return self._cast[key]

    def _cond_as(self, b: int, row: torch.Tensor) -> torch.Tensor | None:
        key = (b, row.dtype, row.device)
        if key not in self._cast:
            cond = self.conds[b]
            self._cast[key] = cond.to(device=row.device, dtype=row.dtype) if isinstance(cond, torch.Tensor) else None
        cond = self._cast[key]
        if cond is not None and cond.dim() == row.dim() == 2 and cond.shape[0] == row.shape[0] + 1 \
                and cond.shape[1:] == row.shape[1:]:
            cond = cond[1:]  # sd-webui-controlnet prepends a cond/uncond marker token that its UNet forward strips
        return cond if cond is not None and cond.shape == row.shape else None
