"""One generation with InitEdit: resolve the spec per image, edit each batch's first noise, report.

The WebUI calls in through ``scripts/initedit.py``; WebUI access goes through ``host`` (anything that
satisfies ``hosts.protocol.Host``: one of the classes in ``webui/hosts``, a stand-in in tests).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..layout import heatmaps, placement, probe, tokens
from ..reroll import keep, noise, noise_stream
from ..layout.guidance import LayoutGuidance
from ..sampling_hooks import SamplingHooks
from ..spec import NOTE_KEY, InitEditSpec, LayoutBox
from . import settings
from .console import LOG_PREFIX
from .hosts.protocol import Host
from .per_image import batch_first_index, resolve_seeds, spec_for_image


@dataclass
class LayoutOutcome:
    image_index: int
    phrases: list[str]
    boxes: list[tuple]
    maps_before: torch.Tensor
    maps_after: torch.Tensor
    shares: list[tuple[float, float]]
    guide: LayoutGuidance | None = None  # watched the first step after the guided ones (row ``batch_row``)
    batch_row: int = 0


@dataclass
class PhraseLookup:
    """Where the boxes' phrases are in one image's prompt (the AND sub-prompt naming most of them)."""

    row: int  # the cond row of that sub-prompt
    positions: list[list[int]]  # token positions per kept box
    kept: list[LayoutBox]
    missing: list[tuple[LayoutBox, str]]  # box, why it was not found


@dataclass
class Session:
    """One generation: owns ``p`` and the resolved spec; the WebUI is reached only through ``host``."""

    p: Any
    spec: InitEditSpec  # seeds resolved (never -1)
    host: Host
    image_specs: list[InitEditSpec] = field(default_factory=list)  # per global image index
    notes: list[str] = field(default_factory=list)
    layouts: list[LayoutOutcome] = field(default_factory=list)
    restorers: list[Callable[[], None]] = field(default_factory=list)
    cache: keep.BaseCache | None = None  # recent plain generations, the bases of 'Keep the rest'
    hires_done: set = field(default_factory=set)  # hires-pass noises already edited

    # ---------------------------------------------------------------- set-up (script.process)
    @classmethod
    def start(cls, p, spec: InitEditSpec, host: Host, notes=(), cache: keep.BaseCache | None = None) -> "Session":
        spec = resolve_seeds(spec)
        count = len(getattr(p, "all_seeds", []) or [0])
        if spec.vary == "reroll" and spec.reroll:
            # every image keeps the base seed; image i gets reroll seeds + i
            p.all_seeds = [p.all_seeds[0]] * count
        session = cls(p=p, spec=spec, host=host, cache=cache)
        session.image_specs = [spec_for_image(spec, i) for i in range(count)]
        for note in notes:
            session.note(note)
        return session

    def note(self, text: str) -> None:
        p = self.p
        if text not in self.notes:
            self.notes.append(text)
            print(f"{LOG_PREFIX} {text}")
            if hasattr(p, "comment"):
                p.comment(f"{LOG_PREFIX} {text}")
            if isinstance(getattr(p, "extra_generation_params", None), dict):
                p.extra_generation_params[NOTE_KEY] = "; ".join(self.notes)

    def batch_specs(self, size: int) -> list[InitEditSpec]:
        """The specs of the current batch's images."""
        first = batch_first_index(self.p)
        return [self.image_specs[min(first + i, len(self.image_specs) - 1)] for i in range(size)]

    # ---------------------------------------------------------------- first pass
    def edit_first_noise(self, x: torch.Tensor, c, base_rng, uc=None) -> tuple[torch.Tensor, Any]:
        """Edit this batch's initial noise; returns (new x, the rng later steps should draw from).

        Also makes the SDE samplers' Brownian noise follow the regions, and hooks the batch's sampling
        (``host.hook_sampling``): layout guidance, keep (the outside follows the image without the reroll,
        generated first on a cache miss) and the recorder that remembers plain generations as bases.
        """
        specs = self.batch_specs(x.shape[0])
        guide = None
        if self.spec.layout:
            x, guide = self._layout(x, c, specs)
        x_pre = x
        follow, plan = base_rng, None
        if self.spec.reroll:
            x, follow, plan = self._reroll(x, specs, follow, sde=True)
        kept = self._keep(x_pre, c, uc, specs, guide) if plan is not None and self.spec.keep > 0 else None
        record = None if plan is not None else self.recorder(x, c, uc, specs)
        hooks = SamplingHooks([guide, kept, record])
        if hooks:
            self.restorers.append(self.host.hook_sampling(self.p, hooks))
        return x, follow

    def _reroll(self, x: torch.Tensor, specs: list[InitEditSpec], follow, sde: bool = False):
        p, host = self.p, self.host
        shape = tuple(x.shape[1:])
        x, plan = noise.reroll_batch(x, [s.reroll for s in specs], lambda seeds: host.noise_stream(p, shape, seeds))
        if plan is None or not host.opt(settings.FOLLOW_OPTION, settings.FOLLOW_DEFAULT):
            return x, follow, plan
        if follow is not None:
            follow = noise_stream.RerollStream(follow, plan)
        if sde:
            seeds = [[s.reroll[r].seed for s in specs] for r in range(len(specs[0].reroll))]

            def follow_sde(base, x_, sigmas):
                if base is None:  # the WebUI lets k-diffusion seed it at random: nothing to follow
                    self.note("SDE noise not rerolled: the setting 'Do not make DPM++ SDE deterministic across "
                              "different batch sizes' is on")
                    return None
                return noise_stream.RerollNoiseSampler(base, plan, [host.brownian_noise(x_, sigmas, seeds[r])
                                                                    for r in plan.regions])

            self.restorers.append(host.follow_brownian_noise(p, follow_sde))
        return x, follow, plan

    def close(self) -> None:
        """Undo every per-instance patch this session made (idempotent)."""
        restorers, self.restorers = self.restorers, []
        for restore in restorers:
            restore()

    # ---------------------------------------------------------------- keep the rest
    def base_keys(self, x: torch.Tensor, c, uc, specs: list[InitEditSpec]) -> list[str]:
        """Per image, what decides its first pass without the reroll (the base cache's keys)."""
        return [self.host.base_key(self.p, x[i], c, uc, i, base_extra(specs[i])) for i in range(x.shape[0])]

    def recorder(self, x: torch.Tensor, c, uc, specs: list[InitEditSpec]) -> keep.Recorder | None:
        """Remembers this batch as the base of later rerolls (a plain generation: no reroll in it)."""
        if self.cache is None or self.cache.max_bytes <= 0 or uc is None:
            return None
        return self.cache.recorder(self.base_keys(x, c, uc, specs))

    def _keep(self, x_pre: torch.Tensor, c, uc, specs: list[InitEditSpec], guide) -> keep.KeepBlend | None:
        """The outside of the regions follows the base (this batch from ``x_pre``, the noise without the
        reroll): remembered from an earlier generation, or generated now, before the real sampling."""
        if uc is None:
            self.note("'Keep the rest' skipped: this WebUI gives no unconditional conditioning to sample the base")
            return None
        keys = self.base_keys(x_pre, c, uc, specs)
        records = [self.cache.get(k) if self.cache is not None else None for k in keys]
        if any(r is None for r in records):
            self.host.set_textinfo("InitEdit: generating the image without the reroll for 'Keep the rest'")
            recorder = self.cache.recorder(keys) if self.cache is not None else keep.Recorder()
            print(f"{LOG_PREFIX} keep: the image without the reroll is not remembered; generating it first")
            self.host.sample_base(self.p, x_pre, c, uc, SamplingHooks([guide, recorder]))
            if not recorder.records or not all(r.complete for r in recorder.records):
                self.note("'Keep the rest' skipped for this batch: the image without the reroll did not finish")
                return None
            records = [r if r is not None else recorder.records[i] for i, r in enumerate(records)]
        return keep.KeepBlend.from_spec(records, [s.reroll for s in specs], tuple(x_pre.shape[-2:]), self.spec)

    def _layout(self, x: torch.Tensor, c, specs: list[InitEditSpec]) -> torch.Tensor:
        p, host = self.p, self.host
        first = batch_first_index(p)
        rows_of = host.cond_rows_of(c)
        positions, boxes, rows, phrases = [], [], [], []
        for i in range(x.shape[0]):
            prompt = p.prompts[i] if i < len(p.prompts) else p.prompts[-1]
            found = self.locate_phrases(prompt, rows_of[i])
            for box, message in found.missing:
                self.note(f"layout box {self.spec.layout.index(box)} skipped: {message}")
            if found.missing:
                index = min(first + i, len(self.image_specs) - 1)
                self.image_specs[index] = specs[i].replace(layout=tuple(found.kept))
            rows.append(found.row)
            positions.append(found.positions)
            boxes.append([b.box for b in found.kept])
            phrases.append([b.phrase for b in found.kept])
        if not any(boxes):
            return x, None
        host.set_textinfo("InitEdit: probing the initial noise")
        call = host.probe_call(p, x, c, rows)
        seeds = [int(s) for s in self.p.all_seeds[first:first + x.shape[0]]]

        def candidate_noise(j: int) -> torch.Tensor:  # candidate j of each image: the host's noise of a derived seed
            return host.noise_stream(p, tuple(x.shape[1:]), [probe.candidate_seed(s, j) for s in seeds]).next()
        try:
            result = probe.run_layout(host.unet_module(), call, x, positions, boxes,
                                      measure_after=self.spec.heatmaps, should_stop=host.should_stop,
                                      candidate_noise=candidate_noise, **probe.layout_options(self.spec))
        finally:
            host.forget_controlnet_batch_caches(p)
        guide = None
        if self.spec.guidance > 0 and self.spec.guidance_steps > 0:
            guide = LayoutGuidance.from_spec(host.unet_module(), self.spec, positions, boxes, rows=rows)
            if self.spec.heatmaps:
                guide.watch(probe.probe_layers(host.unet_module(), self.spec.layers))
        for i in range(x.shape[0]):
            if boxes[i] and result.maps_before:
                shares = [(r.share_before, r.share_after) for r in result.reports[i]]
                self.layouts.append(LayoutOutcome(first + i, phrases[i], boxes[i], result.maps_before[i].cpu(),
                                                  result.maps_after[i].cpu(), shares, guide, i))
                summary = ", ".join(f"{ph!r} {a:.0%}->{b:.0%}" for ph, (a, b) in zip(phrases[i], shares))
                how = "measured" if result.measured_after else "predicted"
                print(f"{LOG_PREFIX} image {first + i}: attention inside its box {summary} "
                      f"({how}; {result.probes} probe(s))")
        return result.noise, guide

    def locate_phrases(self, prompt: str, cond_rows: list[int]) -> PhraseLookup:
        """Pick the AND sub-prompt naming most boxes; boxes whose phrase is absent are listed as missing."""
        host = self.host
        texts = host.subprompts_at_step0(prompt, getattr(self.p, "steps", 20))
        best = None
        for j, text in enumerate(texts[:len(cond_rows)]):
            chunks = host.prompt_chunks(text)
            found = PhraseLookup(row=cond_rows[j], positions=[], kept=[], missing=[])
            for box in self.spec.layout:
                try:
                    found.positions.append(tokens.phrase_positions(chunks, box.phrase, host.encode_phrase,
                                                                   host.decode_tokens))
                    found.kept.append(box)
                except tokens.PhraseNotFound as e:
                    found.missing.append((box, str(e)))
            if best is None or len(found.kept) > len(best.kept):
                best = found
        return best

    # ---------------------------------------------------------------- hires pass
    def edit_hires_noise(self, noise_tensor: torch.Tensor) -> None:
        """With "hires": true, reroll the regions of the hires pass's noise too (in place), once per batch:
        Forge calls the hook twice in the hires pass with the same tensor."""
        if not (self.spec.hires and self.spec.reroll):
            return
        done = (batch_first_index(self.p), id(noise_tensor), noise_tensor.data_ptr())
        if done in self.hires_done:
            return
        self.hires_done.add(done)
        edited, _, _ = self._reroll(noise_tensor, self.batch_specs(noise_tensor.shape[0]), None)
        noise_tensor.copy_(edited)

    # ---------------------------------------------------------------- results
    def heatmap_images(self, size: tuple[int, int]):
        """Per image with layout boxes: (index, sheet): the probe's maps before / after the edit and, when
        guidance ran, the model's own attention at the first step after the guided ones."""
        tile = (max(64, min(256, size[0])), max(64, min(256, size[1])))
        sheets = []
        for o in self.layouts:
            guided = o.guide.watched_maps(o.batch_row) if o.guide is not None else None
            shares = o.shares
            label = "after guidance"
            if guided is not None:
                shares = [s + (g,) for s, g in zip(o.shares, placement.share_inside(guided, o.boxes))]
                label = f"step {o.guide.watched_index + 1}, unguided"
            sheets.append((o.image_index, heatmaps.render(o.maps_before, o.maps_after, o.boxes, o.phrases, tile,
                                                          shares, guided, label)))
        return sheets


def base_extra(spec: InitEditSpec) -> str:
    """InitEdit's share of what decides an image's first pass without the reroll: the layout fields. Every
    other field is reset to its default, so a plain generation (the empty spec) and a reroll of it agree."""
    d = InitEditSpec()
    return spec.replace(reroll=(), vary=d.vary, hires=d.hires, heatmaps=d.heatmaps, keep=d.keep,
                        keep_band=d.keep_band).to_json()
