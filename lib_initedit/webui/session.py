"""One generation with InitEdit: resolve the spec per image, edit each batch's first noise, report.

The WebUI calls in through ``scripts/initedit.py``; WebUI access goes through ``host`` (a module with
the functions of ``host.py``), so tests can pass a stand-in.
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import heatmaps, noise, noise_stream, probe, tokens
from ..spec import InitEditSpec

LOG_PREFIX = "InitEdit:"
NOTE_KEY = "InitEdit note"


@dataclass
class LayoutOutcome:
    image_index: int
    phrases: list[str]
    boxes: list[tuple]
    maps_before: torch.Tensor
    maps_after: torch.Tensor
    shares: list[tuple[float, float]]


@dataclass
class Session:
    spec: InitEditSpec  # seeds resolved (never -1)
    host: Any
    image_specs: list[InitEditSpec] = field(default_factory=list)  # per global image index
    notes: list[str] = field(default_factory=list)
    layouts: list[LayoutOutcome] = field(default_factory=list)

    # ---------------------------------------------------------------- set-up (script.process)
    @classmethod
    def start(cls, p, spec: InitEditSpec, host, notes=()) -> "Session":
        spec = resolve_seeds(spec)
        count = len(getattr(p, "all_seeds", []) or [0])
        if spec.vary == "reroll" and spec.reroll:
            # every image keeps the base seed; image i gets reroll seeds + i
            p.all_seeds = [p.all_seeds[0]] * count
        session = cls(spec=spec, host=host)
        session.image_specs = [spec_for_image(spec, i) for i in range(count)]
        for note in notes:
            session.note(p, note)
        return session

    def note(self, p, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)
            print(f"{LOG_PREFIX} {text}")
            if hasattr(p, "comment"):
                p.comment(f"{LOG_PREFIX} {text}")
            if isinstance(getattr(p, "extra_generation_params", None), dict):
                p.extra_generation_params[NOTE_KEY] = "; ".join(self.notes)

    # ---------------------------------------------------------------- first pass
    def edit_first_noise(self, p, x: torch.Tensor, c, base_rng) -> tuple[torch.Tensor, Any]:
        """Edit this batch's initial noise; returns (new x, the rng later steps should draw from)."""
        first = batch_first_index(p)
        specs = [self.image_specs[min(first + i, len(self.image_specs) - 1)] for i in range(x.shape[0])]
        if self.spec.layout:
            x = self._layout(p, x, c, first, specs)
        follow = base_rng
        if self.spec.reroll:
            x, follow = self._reroll(p, x, specs, follow)
        return x, follow

    def _reroll(self, p, x: torch.Tensor, specs: list[InitEditSpec], follow):
        shape = tuple(x.shape[1:])
        x, plan = noise.reroll_batch(x, [s.reroll for s in specs], lambda seeds: self.host.noise_stream(p, shape, seeds))
        if plan is not None and follow is not None and self.host.opt("initedit_ancestral_follow", True):
            follow = noise_stream.RerollStream(follow, plan)
        return x, follow

    def _layout(self, p, x: torch.Tensor, c, first: int, specs: list[InitEditSpec]) -> torch.Tensor:
        host = self.host
        rows_of = host.cond_rows_of(c)
        positions, boxes, rows, phrases = [], [], [], []
        for i in range(x.shape[0]):
            prompt = p.prompts[i] if i < len(p.prompts) else p.prompts[-1]
            row, found, kept = self._locate_phrases(p, prompt, rows_of[i], first + i)
            rows.append(row)
            positions.append(found)
            boxes.append([b.box for b in kept])
            phrases.append([b.phrase for b in kept])
        if not any(boxes):
            return x
        host.set_textinfo("InitEdit: probing the initial noise")
        call = host.probe_call(p, x, c, rows)
        try:
            result = probe.run_layout(host.unet_module(), call, x, positions, boxes, rounds=self.spec.rounds,
                                      method=self.spec.method, layers=self.spec.layers,
                                      measure_after=self.spec.heatmaps, should_stop=host.should_stop)
        finally:
            host.forget_controlnet_batch_caches(p)
        for i in range(x.shape[0]):
            if boxes[i] and result.maps_before:
                shares = [(r.share_before, r.share_after) for r in result.reports[i]]
                self.layouts.append(LayoutOutcome(first + i, phrases[i], boxes[i], result.maps_before[i].cpu(),
                                                  result.maps_after[i].cpu(), shares))
                summary = ", ".join(f"{ph!r} {a:.0%}->{b:.0%}" for ph, (a, b) in zip(phrases[i], shares))
                how = "measured" if result.measured_after else "predicted"
                print(f"{LOG_PREFIX} image {first + i}: attention inside its box {summary} "
                      f"({how}; {result.probes} probe(s))")
        return result.noise

    def _locate_phrases(self, p, prompt: str, cond_rows: list[int], image: int):
        """Pick the AND sub-prompt naming most boxes; boxes whose phrase is absent are dropped, and said."""
        host = self.host
        texts = host.subprompts_at_step0(prompt, getattr(p, "steps", 20))
        best = None
        for j, text in enumerate(texts[:len(cond_rows)]):
            chunks = host.prompt_chunks(text)
            found, kept, missing = [], [], []
            for box in self.spec.layout:
                try:
                    found.append(tokens.phrase_positions(chunks, box.phrase, host.encode_phrase, host.decode_tokens))
                    kept.append(box)
                except tokens.PhraseNotFound as e:
                    missing.append((box, str(e)))
            if best is None or len(kept) > len(best[2]):
                best = (cond_rows[j], found, kept, missing)
        row, found, kept, missing = best
        for box, message in missing:
            self.note(p, f"layout box {self.spec.layout.index(box)} skipped: {message}")
        if missing:
            spec = self.image_specs[min(image, len(self.image_specs) - 1)]
            self.image_specs[min(image, len(self.image_specs) - 1)] = spec.replace(
                layout=tuple(b for b in spec.layout if b in kept))
        return row, found, kept

    # ---------------------------------------------------------------- hires pass
    def edit_hires_noise(self, p, noise_tensor: torch.Tensor) -> None:
        """With "hires": true, reroll the regions of the hires pass's noise too (in place)."""
        if not (self.spec.hires and self.spec.reroll):
            return
        first = batch_first_index(p)
        specs = [self.image_specs[min(first + i, len(self.image_specs) - 1)] for i in range(noise_tensor.shape[0])]
        edited, _ = self._reroll(p, noise_tensor, specs, None)
        noise_tensor.copy_(edited)

    # ---------------------------------------------------------------- results
    def heatmap_images(self, size: tuple[int, int]):
        tile = (max(64, min(256, size[0])), max(64, min(256, size[1])))
        return [(o.image_index, heatmaps.render(o.maps_before, o.maps_after, o.boxes, o.phrases, tile, o.shares))
                for o in self.layouts]


def batch_first_index(p) -> int:
    return int(getattr(p, "iteration", 0)) * int(getattr(p, "batch_size", 1))


def resolve_seeds(spec: InitEditSpec) -> InitEditSpec:
    """-1 -> a random seed, as the WebUI resolves its own seed."""
    regions = tuple(r if r.seed >= 0 else dataclasses.replace(r, seed=int(random.randrange(4294967294)))
                    for r in spec.reroll)
    return spec.replace(reroll=regions)


def spec_for_image(spec: InitEditSpec, index: int) -> InitEditSpec:
    """The spec image ``index`` was made with: with vary "reroll" its reroll seeds are seed + index."""
    if spec.vary != "reroll" or not spec.reroll:
        return spec
    return spec.replace(reroll=tuple(dataclasses.replace(r, seed=(r.seed + index) % 4294967296) for r in spec.reroll))


def infotext_image_index(count: int, p=None, index=0, all_prompts=None, **_) -> int:
    """The global image index of a create_infotext call (A1111 1.9+ calls per-image values with locals()).

    Inside the batch loop it is called with the batch's own prompt list and a batch-local index.
    """
    if p is not None and all_prompts is getattr(p, "prompts", None):
        index = int(getattr(p, "iteration", 0)) * int(getattr(p, "batch_size", 1)) + int(index or 0)
    return max(0, min(int(index or 0), count - 1))
