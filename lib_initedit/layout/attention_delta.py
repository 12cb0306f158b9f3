"""The exact change of an attention output when a bias is added to some columns' scores, computed without
materialising the probabilities: the score math of layout guidance (see ``guidance.py``'s module doc)."""
from __future__ import annotations

import torch

DEFAULT_QUERY_CHUNK = 1024  # query positions per chunk: memory ~ (rows, heads, chunk, tokens)


def attention_delta(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, scale: float,
                    columns: torch.Tensor, bias: torch.Tensor | None, chunk: int = DEFAULT_QUERY_CHUNK,
                    share: tuple | None = None) -> torch.Tensor:
    """softmax(s + b) v - softmax(s) v, heads merged back: (R, N, H*dv) float32 (or (N, H*dv) unbatched).

    q (R, N, H*d), k / v (R, T, H*d); b is ``bias`` (R, N, C) on ``columns`` (R, C) and 0 elsewhere (a padded
    column with bias 0 changes nothing). Or, with ``share = (members, floor, keep)``, b follows from each
    query's own attention (see the module doc): members (R, K, C) 0/1 says which columns are box k's phrase,
    and box k's phrase share P becomes max(keep P, floor) with floor / keep (R, N, K); columns of several
    boxes add their biases. Chunked over the N query positions: nothing of size (R, H, N, T) is ever
    allocated, only (R, H, chunk, T)."""
    single = q.dim() == 2
    if single:
        q, k, v, columns = q[None], k[None], v[None], columns[None]
        bias = None if bias is None else bias[None]
        share = None if share is None else tuple(t[None] for t in share)
    r, n, inner = q.shape
    d = inner // heads
    qh = q.float().reshape(r, n, heads, d).transpose(1, 2)  # (R, H, N, d)
    kh = k.float().reshape(r, k.shape[1], heads, d).transpose(1, 2)  # (R, H, T, d)
    vh = v.float().reshape(r, v.shape[1], heads, -1).transpose(1, 2)  # (R, H, T, dv)
    c = columns.shape[1]
    gather = columns.to(q.device)[:, None, :, None].expand(r, heads, c, vh.shape[-1])
    vc = torch.gather(vh, 2, gather)  # (R, H, C, dv)
    gain = None if bias is None else torch.expm1(bias.float())[:, None]  # (R, 1, N, C)
    if share is not None:
        members, floor, keep = (t.to(q.device).float() for t in share)
        floor, keep = floor[:, None], keep[:, None]  # (R, 1, N, K)
    col_index = columns.to(q.device)[:, None, None, :]
    out = torch.empty(r, heads, n, vh.shape[-1], dtype=torch.float32, device=q.device)
    for start in range(0, n, max(1, chunk)):
        stop = min(n, start + chunk)
        probs = torch.matmul(qh[:, :, start:stop], kh.transpose(-1, -2)).mul_(scale).softmax(dim=-1)  # (R, H, n, T)
        old = torch.matmul(probs, vh)  # (R, H, n, dv)
        pc = torch.gather(probs, 3, col_index.expand(r, heads, stop - start, c))  # (R, H, n, C)
        if share is None:
            f = pc * gain[:, :, start:stop]
        else:
            f = pc * torch.expm1(share_bias(pc, members, floor[:, :, start:stop], keep[:, :, start:stop]))
        z1 = f.sum(dim=-1, keepdim=True)  # Z - 1
        z = 1 + z1 if share is None else (1 + z1).clamp(min=_MIN_Z)
        out[:, :, start:stop] = (torch.matmul(f, vc) - z1 * old) / z
    out = out.transpose(1, 2).reshape(r, n, -1)
    return out[0] if single else out


def share_bias(pc: torch.Tensor, members: torch.Tensor, floor: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """(R, H, n, C) column bias that moves each box phrase's share P to max(keep P, floor): logit(P') - logit(P)."""
    raw = torch.einsum("rhnc,rkc->rhnk", pc, members)
    share = raw.clamp(_TINY, 1 - _SHARE_EPS)
    target = torch.maximum(share * keep, floor).clamp(_TINY, 1 - _SHARE_EPS)
    b = (target.log() - torch.log1p(-target)) - (share.log() - torch.log1p(-share))
    # a phrase that holds (nearly) all of a query's attention is pushed down only as far as the softmax's new
    # normaliser Z = 1 - P (1 - e^b) stays >= _MIN_Z (the rest of the prompt has nothing left to take it)
    lowest = torch.log((1 - (1 - _MIN_Z) / raw.clamp(min=_TINY)).clamp(min=_TINY))
    return torch.einsum("rhnk,rkc->rhnc", torch.maximum(b, lowest), members)


_TINY = 1e-30  # shares below this count as this (float32-safe logits)
_SHARE_EPS = 1e-6  # and the largest share is 1 - this
_MIN_Z = 1e-3  # the smallest softmax normaliser a bias may leave (the change is divided by it)
