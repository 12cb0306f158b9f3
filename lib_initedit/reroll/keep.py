"""Keep the rest: while a region is rerolled, the outside of the regions follows the base generation.

The base generation is the same request without the reroll. A ``Recorder`` remembers its denoised
prediction after CFG (x0) at every call of the host's CFG denoiser; a ``BaseCache`` keeps recent records
within a byte budget; in the reroll generation ``KeepBlend`` replaces the denoised by the base's wherever
the release map (``release.py``) says "follow":

    x0' = w * x0 + (1 - w) * x0_base[i],   w = max(m, s, released_i)

``m`` is the regions' soft geometry at latent resolution (coverage x feather ramp, strength NOT included:
``noise.region_weight`` at strength 1, united over the regions as ``1 - prod(1 - m_r)``); ``released_i`` is 1
where call i's step is at or past the element's release: 0 inside the regions, ``K = floor(keep * steps)``
beyond a band around them, in between in the band (the nearer, the earlier). Band 0: every element at K.
``s`` (``keep_release`` "soft") is 1 - the element's release fraction: before its release an element of the
band already takes that share of the new prediction (the nearer, the more); 0 beyond the band and with "hard".

Why the outside is then exact: outside the regions x_T is the base's (the reroll never changes noise
there), and the usual samplers' updates are elementwise in (x, denoised) (Euler, DDIM, Heun, DPM++ 2M ...;
ancestral and SDE steps add noise that is the base's outside the regions). An element follows from the
first call until its release, so by induction its x equals the base's x at every call before the release,
bit for bit, whatever the UNet saw across the edge; beyond the band at keep 1 that is to the end.

Every part is host-agnostic (plain torch) and a ``sampling_hooks.SamplingHooks`` part (``enter`` /
``after_call`` / ``leave``), run the same way by the WebUI hosts and the toy world's sampler.
"""
from __future__ import annotations

import dataclasses
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Hashable, Sequence

import torch

from . import release as release_
from .noise import region_weight, spatial_weight
from ..sampling_hooks import Call, steps_of_calls
from ..spec import FRACTION_OF, RerollRegion


def kept_calls(keep: float, calls: int) -> int:
    """How many of a generation's ``calls`` denoiser calls are kept: ``floor(keep * calls)`` (with a tiny
    tolerance, so 0.3 * 20 is 6, not 5 or 7); keep 0 -> 0, keep 1 -> all."""
    if keep <= 0 or calls <= 0:
        return 0
    return min(calls, int(math.floor(keep * calls + 1e-6)))


def keep_mask(regions: Sequence[RerollRegion], height: int, width: int) -> torch.Tensor:
    """(height, width) soft geometry of one image's regions, 0..1: each region's coverage x feather ramp at
    strength 1 (``noise.region_weight``), united as ``1 - prod(1 - m_r)``. 1 = runs free, 0 = follows the base."""
    rest = torch.ones(height, width)
    for region in regions:
        rest = rest * (1.0 - region_weight(dataclasses.replace(region, strength=1.0), height, width))
    return (1.0 - rest).clamp(0.0, 1.0)


def bytes_per_call(shape: Sequence[int], dtype: torch.dtype = torch.float32) -> int:
    """What a record costs per image per denoiser call: C * H * W * element size of the latent.
    SD 512x512 (4x64x64, fp32): 65,536 bytes; 20 steps of Euler: 1.25 MiB an image. SDXL 1024x1024: the same
    per call (4x128x128 fp32 = 256 KiB), i.e. 5 MiB an image at 20 steps."""
    n = 1
    for s in shape:
        n *= int(s)
    return n * torch.empty((), dtype=dtype).element_size()


@dataclass
class BaseRecord:
    """One image's base generation: its denoised prediction after CFG at every denoiser call, on the CPU,
    each (C, H, W). ``complete``: the generation ran to its end (only complete records are cached)."""

    calls: list[torch.Tensor] = field(default_factory=list)
    complete: bool = False
    places: list[float] = field(default_factory=list)  # each call's place on the step schedule (``Call.at``)

    def __len__(self) -> int:
        return len(self.calls)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.calls)


class Recorder:
    """Records a batch's denoised prediction at every call, one ``BaseRecord`` per image.

    Attach it to every generation (a ``SamplingHooks`` part). It never
    changes the prediction. ``on_complete(records)`` runs when the generation completed (``leave(True)``);
    the host stores the records in its ``BaseCache`` there, under the keys it built for the images.
    """

    def __init__(self, on_complete: Callable[[list[BaseRecord]], None] | None = None):
        self.on_complete = on_complete
        self.records: list[BaseRecord] = []
        self._broken = False

    def enter(self) -> None:
        self.records = []
        self._broken = False

    def after_call(self, call: Call, denoised: torch.Tensor) -> None:
        expected = len(self.records[0]) if self.records else 0
        if call.index != expected or (self.records and len(self.records) != denoised.shape[0]):
            self._broken = True  # out of order or a different batch: never cached (never raises into the sampler)
            return None
        if not self.records:
            self.records = [BaseRecord() for _ in range(denoised.shape[0])]
        cpu = denoised.detach().to("cpu")
        for record, row in zip(self.records, cpu):
            record.calls.append(row.clone())  # own storage: the host may reuse its tensor
            record.places.append(float(call.at))
        return None

    def leave(self, completed: bool) -> None:
        ok = bool(completed) and not self._broken
        for record in self.records:
            record.complete = ok
        if ok and self.on_complete is not None and self.records:
            self.on_complete(self.records)


class BaseCache:
    """Bounded LRU of complete base records: ``key`` is any hashable the host builds (what decides one
    image's first pass); one entry per image. Never holds more than ``max_bytes`` (0 = holds nothing);
    the least recently used entries are evicted first. Thread-safe."""

    def __init__(self, max_bytes: int):
        self._entries: OrderedDict[Hashable, BaseRecord] = OrderedDict()
        self._lock = threading.Lock()
        self.max_bytes = max(0, int(max_bytes))
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def get(self, key: Hashable) -> BaseRecord | None:
        """The record, or None: a miss means the host has to generate the base first."""
        with self._lock:
            record = self._entries.get(key)
            if record is not None:
                self._entries.move_to_end(key)
            return record

    def recorder(self, keys: Sequence[Hashable]) -> Recorder:
        """A ``Recorder`` whose complete records are stored here, image i's under ``keys[i]``."""
        return Recorder(on_complete=lambda records: [self.put(k, r) for k, r in zip(keys, records)])

    def put(self, key: Hashable, record: BaseRecord) -> bool:
        """Store a complete record (replacing the key's old one); False when it is incomplete or alone larger
        than the cap (then nothing is stored and nothing evicted)."""
        size = record.nbytes
        if not record.complete or size > self.max_bytes or not len(record):
            return False
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.nbytes -= old.nbytes
            self._entries[key] = record
            self.nbytes += size
            self._evict()
        return True

    def resize(self, max_bytes: int) -> None:
        """A new cap (the host's setting changed); evicts down to it."""
        with self._lock:
            self.max_bytes = max(0, int(max_bytes))
            self._evict()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.nbytes = 0

    def _evict(self) -> None:
        while self.nbytes > self.max_bytes and self._entries:
            _, old = self._entries.popitem(last=False)
            self.nbytes -= old.nbytes


class KeepBlend:
    """The keep step as a release map: at a call, ``x0' = w * x0 + (1 - w) * base[call]``, ``w = max(m, s, released)``.

    ``bases[b]``: image b's base record (the same object may serve several images: with ``vary: reroll``
    every image of the batch has the same base); ``masks``: (B, H, W) or (B, 1, H, W) soft geometry, 1 =
    free (``keep_mask``); ``release``: same shape, when each element runs free as a fraction of the kept
    time (``release.release_map``; None: 1 everywhere, the keep without a band); ``soft``: ``s = 1 - release``
    (else 0). Where ``w`` is 0 (outside the regions and the band, not yet released) the prediction is the
    base's exactly.

    Time is counted as ``fraction_of`` says. "steps": the kept time is ``K = floor(keep * steps)`` steps and an
    element follows while the step the call belongs to (both calls of a Heun step: the step's) is before
    ``K * release``, so a second-order sampler keeps the same steps as Euler. The steps of the calls come
    from the base record's places (``steps_of_calls``): the reroll samples the same way. "calls" (infotexts
    written before): ``K = kept_calls(keep, len(base))`` and the call's index. keep 0 -> never changes anything.
    """

    def __init__(self, bases: Sequence[BaseRecord], masks: torch.Tensor, keep: float,
                 release: torch.Tensor | None = None, fraction_of: str = "calls", soft: bool = False):
        if len(bases) != masks.shape[0]:
            raise ValueError(f"KeepBlend: {len(bases)} base records for a batch of {masks.shape[0]}")
        if fraction_of not in FRACTION_OF:
            raise ValueError(f"fraction_of: {fraction_of!r} is not one of {', '.join(FRACTION_OF)}")
        self.bases = list(bases)
        self.masks = (masks if masks.dim() == 4 else masks[:, None]).float()
        self.keep = float(keep)
        self.fraction_of = fraction_of
        if release is None:
            release = torch.ones_like(self.masks)
        self.release = (release if release.dim() == 4 else release[:, None]).float().clamp(0.0, 1.0)
        # soft: before its release an element of the band takes (1 - its fraction) of the new prediction; 0 beyond
        # the band (fraction 1), so the far outside still follows exactly
        self.floor = torch.maximum(self.masks, 1.0 - self.release) if soft else self.masks
        self.soft = bool(soft)
        held = self.release[self.masks < 1]  # elements that are not free from the start
        self.last = float(held.max()) if held.numel() else 0.0  # the latest release, a fraction of K
        self.recorded = min(len(b) for b in self.bases) if self.bases else 0
        self._step_of: list[int] | None = None
        self._kept: float | None = None
        self._release_at: torch.Tensor | None = None

    @classmethod
    def from_regions(cls, bases: Sequence[BaseRecord], regions: Sequence[Sequence[RerollRegion]],
                     latent_hw: tuple[int, int], keep: float, band: float = 0.0,
                     shape: str = release_.DEFAULT_SHAPE, fraction_of: str = "calls", soft: bool = False) -> "KeepBlend":
        """``regions[b]``: image b's reroll regions (as given to ``noise.reroll_batch``); ``band``: the width of
        the gradually released band around them, a fraction of the latent's shorter side (0: no band)."""
        h, w = latent_hw
        masks, maps, done = [], [], {}
        for r in regions:  # images with the same geometry (every image of a "vary" batch) share the work
            key = tuple((x.box, x.mask, x.feather) for x in r)
            if key not in done:
                done[key] = (keep_mask(r, h, w), release_.release_map(r, h, w, band, shape))
            masks.append(done[key][0])
            maps.append(done[key][1])
        return cls(bases, torch.stack(masks), keep, torch.stack(maps), fraction_of, soft)

    @classmethod
    def from_spec(cls, bases: Sequence[BaseRecord], regions: Sequence[Sequence[RerollRegion]],
                  latent_hw: tuple[int, int], spec) -> "KeepBlend":
        """From an ``InitEditSpec``'s keep fields: ``keep``, ``keep_band``, ``keep_release``, ``fraction_of``."""
        way = release_.RELEASES[spec.keep_release]
        return cls.from_regions(bases, regions, latent_hw, spec.keep, band=spec.keep_band, shape=way.shape,
                                soft=way.soft, fraction_of=spec.fraction_of)

    def kept(self, call: Call) -> float:
        """K: the kept time, in the units ``fraction_of`` counts (steps or calls)."""
        return float(kept_calls(self.keep, call.steps if self.fraction_of == "steps" else self.recorded))

    def time_of(self, call: Call) -> float:
        """The call's time: the sampler step it belongs to ("steps": both calls of a Heun step are in it), or
        its index ("calls")."""
        if self.fraction_of != "steps":
            return float(call.index)
        if self._step_of is None:  # the step of each call of the base's sampling (the reroll's calls the same way)
            places = self.bases[0].places[:self.recorded]
            self._step_of = steps_of_calls(places, call.steps) if len(places) == self.recorded else \
                [min(i, call.steps) for i in range(self.recorded)]
        return float(self._step_of[call.index]) if call.index < len(self._step_of) else float(call.steps)

    def applies(self, call: Call) -> bool:
        """Does some element still follow at this call (and is the call in the record)?"""
        return call.index < self.recorded and self.time_of(call) < self.kept(call) * self.last

    def base_at(self, index: int, like: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) base prediction of call ``index`` on ``like``'s device (in the record's dtype); one
        transfer per distinct record."""
        rows, seen = [], {}
        for record in self.bases:
            key = id(record)
            if key not in seen:
                seen[key] = record.calls[index].to(device=like.device)
            rows.append(seen[key])
        if len(seen) == 1:
            return rows[0].expand(like.shape[0], *rows[0].shape)
        return torch.stack(rows)

    def after_call(self, call: Call, denoised: torch.Tensor) -> torch.Tensor | None:
        """``SamplingHooks`` part: the blended prediction, or None (unchanged) past the kept time."""
        if not self.applies(call):
            return None
        if self.masks.device != denoised.device:
            self.masks = self.masks.to(denoised.device)  # once per batch
            self.release = self.release.to(denoised.device)
            self.floor = self.floor.to(denoised.device)
            self._kept = None
        kept = self.kept(call)
        if self._kept != kept:  # when each element is released, K x its fraction (K is the same at every call)
            self._kept, self._release_at = kept, self.release * kept
        m = spatial_weight(self.floor, denoised)  # (B, 1, H, W) over every channel (and frame axis)
        released = spatial_weight(self._release_at, denoised) <= self.time_of(call)
        w = torch.where(released, torch.ones_like(m), m)  # released: free
        out = w * denoised.float() + (1.0 - w) * self.base_at(call.index, denoised).float()
        return out.to(denoised.dtype)
