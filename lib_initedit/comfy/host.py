"""InitEdit in ComfyUI: everything the node pack asks of ComfyUI (the only code that imports ``comfy.*``).

One ``InitEditPatch`` per node output; it goes on a ``ModelPatcher.clone()`` as three wrappers, so nothing is
written to the shared model and two workflows sharing a checkpoint never see each other's patch:

- ``OUTER_SAMPLE`` (``CFGGuider.outer_sample``: sees the initial noise and the sampler under the stock KSampler
  and under SamplerCustomAdvanced alike): rerolls the regions of the initial noise with each region seed's own
  KSampler noise (``comfy.sample.prepare_noise``), hands ancestral and SDE samplers a noise sampler whose draws
  follow the reroll inside the regions, and, for keep, first runs the same sampling without the reroll
  (the base) and records its denoised prediction at every call;
- ``SAMPLER_SAMPLE`` (model loaded, conditionings processed): the layout probe on the (rerolled) noise, the
  block move, and layout guidance around the sampler (attn2 forwards wrapped for the run and restored
  exactly afterwards, also on error and interrupt);
- ``PREDICT_NOISE`` (once per denoiser call, after CFG): keep's blend of the denoised outside the regions
  and guidance's step bookkeeping.
"""
from __future__ import annotations

import base64
import io
import logging
import math
import random
from typing import Any, Sequence

import torch

import comfy.k_diffusion.sampling as k_sampling
import comfy.patcher_extension as patcher_extension
import comfy.sample
import comfy.samplers

from ..layout import probe as layout_probe
from ..layout import tokens as layout_tokens
from ..layout.guidance import LayoutGuidance
from ..layout.heatmaps import render
from ..patcher import PatcherHost, probe_model_options
from ..reroll.keep import KeepBlend, Recorder
from ..reroll.noise import reroll_batch
from ..reroll.noise_stream import RerollNoiseSampler
from ..sampling_hooks import CallClock, SamplingHooks
from ..spec import RANDOM_SEED_LIMIT, InitEditSpec, RerollRegion, SpecError, wrap_seed

WRAPPER_KEY = "initedit"
OPTIONS_KEY = "initedit"  # model_options entry that holds the patch (the heatmaps node reads it)
log = logging.getLogger("InitEdit")

# How ComfyUI's k-diffusion samplers draw their per-step noise (comfy/k_diffusion/sampling.py): the ones that
# take ``noise_sampler=`` and would otherwise build ``default_noise_sampler(x, seed)`` (ancestral and friends)
# or a ``BrownianTreeNoiseSampler`` over (sigma_min, sigma_max) (SDE samplers). Samplers not listed here are
# deterministic or build their noise otherwise (then only the initial noise follows the reroll; a note says so).
DEFAULT_NOISE = {
    "sample_euler_ancestral", "sample_dpm_2_ancestral", "sample_dpmpp_2s_ancestral", "sample_lcm",
    "sample_euler_ancestral_cfg_pp", "sample_dpmpp_2s_ancestral_cfg_pp", "sample_er_sde", "sample_seeds_2",
    "sample_seeds_3", "sample_sa_solver",
}
BROWNIAN_NOISE = {
    "sample_dpmpp_sde": True, "sample_dpmpp_2m_sde": True, "sample_dpmpp_3m_sde": True,
    "sample_dpmpp_2m_sde_heun": True, "sample_dpmpp_sde_gpu": False, "sample_dpmpp_2m_sde_gpu": False,
    "sample_dpmpp_3m_sde_gpu": False, "sample_dpmpp_2m_sde_heun_gpu": False,
}  # name -> cpu tree
DETERMINISTIC = {
    "sample_euler", "sample_heun", "sample_dpm_2", "sample_lms", "sample_dpm_fast", "sample_dpm_adaptive",
    "sample_dpmpp_2m", "sample_heunpp2", "sample_ipndm", "sample_ipndm_v", "sample_deis", "sample_euler_cfg_pp",
    "sample_dpmpp_2m_cfg_pp", "sample_res_multistep", "sample_res_multistep_cfg_pp", "sample_gradient_estimation",
    "sample_gradient_estimation_cfg_pp", "sample_exp_heun_2_x0",
}


def _said(message: str, _seen: set = set()) -> None:
    if message not in _seen:
        _seen.add(message)
        log.warning("[InitEdit] %s", message)


class ComfyHost(PatcherHost):
    """ComfyUI as a patcher-family host: the patcher is the one the guider samples with (``guider.model_patcher``);
    the probe and the guidance use the shared copies of its options (``lib_initedit.patcher``)."""

    def unet_patcher(self, p=None):
        return p.model_patcher

    def say_once(self, message: str) -> None:
        _said(message)

    def probe_options(self, options: dict) -> dict:  # noqa: D102 (ComfyUI hands the sampling copy of the options)
        options, dropped = probe_model_options(options)
        if dropped:
            self.say_once(self.PROBE_DROPS_REPLACE.format(n=len(dropped)))
        return options

    def guided_options(self, guider, options: dict, hooks) -> tuple[dict, Any]:
        """The sampling copy of the options, guided through the patcher's attn2 replace patches (IPAdapter and
        friends) when it has any; ``(options, blocks)`` (blocks None when nothing is replaced)."""
        blocks = self.guided_blocks(self.unet_patcher(guider), hooks)
        return (options, None) if blocks is None else (blocks.options(options), blocks)


HOST = ComfyHost()


# ------------------------------------------------------------------------------------------------ noise
def seed_noise(shape: Sequence[int], seed: int, dtype=torch.float32) -> torch.Tensor:
    """KSampler's noise for ``seed`` over a latent of ``shape`` (``comfy.sample.prepare_noise``: CPU float32)."""
    return comfy.sample.prepare_noise(torch.zeros(tuple(shape), dtype=dtype), int(seed))


class _FirstDraw:
    """A noise stream whose one draw is given (reroll_batch's first ``next()``)."""

    def __init__(self, draw: torch.Tensor):
        self.draw = draw

    def next(self) -> torch.Tensor:
        return self.draw


def region_initial_noise(shape: Sequence[int], seeds: Sequence[int]) -> torch.Tensor:
    """The fresh noise of one region for a batch: every image the same seed -> that seed's KSampler noise over
    the whole batch (image b gets row b, as a plain KSampler run with that seed); different seeds (vary reroll)
    -> image b gets the first row of its own seed's noise."""
    if len(set(seeds)) == 1:
        return seed_noise(shape, seeds[0])
    return torch.cat([seed_noise((1, *shape[1:]), s) for s in seeds])


def sampler_noise_kind(sampler) -> tuple[str, bool]:
    """("default" | "brownian" | "none" | "unknown", cpu tree) for a ComfyUI sampler object."""
    function = getattr(sampler, "sampler_function", None)
    name = getattr(function, "__name__", "")
    if name in DEFAULT_NOISE:
        return "default", True
    if name in BROWNIAN_NOISE:
        return "brownian", BROWNIAN_NOISE[name]
    if name in DETERMINISTIC or function is None and type(sampler).__name__ in ("UNIPC", "UNIPCBH2"):
        return "none", True
    return "unknown", True


def make_noise_sampler(kind: str, cpu: bool, x: torch.Tensor, sigmas: torch.Tensor, seed):
    """The per-step noise sampler ComfyUI's sampler would build itself for ``seed`` (int, or a list per image)."""
    if kind == "default":
        if isinstance(seed, (list, tuple)):
            samplers = [k_sampling.default_noise_sampler(x[b:b + 1], seed=int(s)) for b, s in enumerate(seed)]
            return lambda sigma, sigma_next: torch.cat([s(sigma, sigma_next) for s in samplers])
        return k_sampling.default_noise_sampler(x, seed=int(seed))
    sigma_min, sigma_max = sigmas[sigmas > 0].min(), sigmas.max()
    seed = [int(s) for s in seed] if isinstance(seed, (list, tuple)) else int(seed)
    return k_sampling.BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=seed, cpu=cpu)


class _NoiseSamplerSampler:
    """A stand-in for the sampler object that passes ``noise_sampler`` (built once x is known) to its function."""

    def __init__(self, sampler, build):
        self.sampler, self.build = sampler, build

    def __getattr__(self, name):
        return getattr(self.sampler, name)

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, *args, **kwargs):
        original = self.sampler.extra_options
        built = {"noise_sampler": None}

        def function(model, x, sigmas_, *a, **kw):
            kw["noise_sampler"] = self.build(x, sigmas_, extra_args.get("seed"))
            built["noise_sampler"] = kw["noise_sampler"]
            return self.sampler.sampler_function(model, x, sigmas_, *a, **kw)

        proxy = comfy.samplers.KSAMPLER(function, original, self.sampler.inpaint_options)
        return proxy.sample(model_wrap, sigmas, extra_args, callback, noise, *args, **kwargs)


# ------------------------------------------------------------------------------------------------ regions
def mask_to_png(mask: torch.Tensor) -> str:
    """A ComfyUI MASK ((B,) H, W, 0..1; the first of a batch) as the spec's base64 PNG (white = region)."""
    from PIL import Image

    m = mask[0] if mask.dim() == 3 else mask
    arr = (m.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr, "L").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def resolve_seed(seed: int) -> int:
    return random.randrange(RANDOM_SEED_LIMIT) if seed == -1 else int(seed)


def batch_regions(spec: InitEditSpec, batch: int) -> list[list[RerollRegion]]:
    """regions[b]: image b's regions with resolved seeds (``vary: reroll``: image b gets seed + b)."""
    base = [r.__class__(**{**r.__dict__, "seed": resolve_seed(r.seed)}) for r in spec.reroll]
    out = []
    for b in range(batch):
        step = b if spec.vary == "reroll" else 0
        out.append([r.__class__(**{**r.__dict__, "seed": wrap_seed(r.seed + step)}) for r in base])
    return out


# ------------------------------------------------------------------------------------------------ layout text
def chunk_ids(tokenized: dict) -> tuple[list[list[int]], set]:
    """Content token ids of each 77-token chunk of a ComfyUI ``clip.tokenize`` result (its first encoder)."""
    key = "l" if "l" in tokenized else next(iter(tokenized))
    chunks = [[int(t[0]) for t in chunk] for chunk in tokenized[key]]
    if not chunks:
        return [], set()
    pads = {chunks[0][-1]}  # SD1/SDXL tokenizers pad with the end token
    return layout_tokens.chunk_contents(chunks, pads), pads


def phrase_positions(clip, text: str, phrases: Sequence[str]) -> list[list[int]]:
    """Token positions of each phrase in the conditioning ``clip`` makes of ``text``; SpecError naming the box."""
    chunks, _ = chunk_ids(clip.tokenize(text))
    tokenizer = getattr(clip, "tokenizer", None)

    def encode(phrase):
        ids, _ = chunk_ids(clip.tokenize(phrase))
        return ids[0] if ids else []

    def decode(ids):
        inner = getattr(getattr(tokenizer, "clip_l", None), "tokenizer", None)
        try:
            return inner.decode(ids) if inner is not None else None
        except Exception:  # an exotic tokenizer: the message falls back to ids
            return None

    out = []
    for k, phrase in enumerate(phrases):
        try:
            out.append(layout_tokens.phrase_positions(chunks, phrase, encode, decode))
        except layout_tokens.PhraseNotFound as e:
            raise SpecError(f"layout[{k}].phrase: {e}") from None
    return out


# ------------------------------------------------------------------------------------------------ the patch
class InitEditPatch:
    """What one InitEdit node puts on its model clone (see the module doc). ``positions`` (layout): token
    positions of each box's phrase in the node's conditioning."""

    def __init__(self, spec: InitEditSpec, positions: Sequence[Sequence[int]] | None = None,
                 follow_noise: bool = True):
        self.spec = spec
        self.positions = [list(p) for p in positions or []]
        self.follow_noise = follow_noise
        self.heatmaps: list = []  # PIL sheets of the last run (layout with heatmaps)
        self.last_regions: list[list[RerollRegion]] = []
        self.last_layout = None
        self.runs = 0
        self._keep: KeepBlend | Recorder | None = None
        self._clock: CallClock | None = None  # the running sampling's calls, placed on its sigmas
        self._guidance: LayoutGuidance | None = None
        self._cond_rows = None
        self.guided_blocks = None  # the last run's GuidedBlocks (attn2 replace patches guided), for reports

    # --------------------------------------------------------------------------- install
    def apply(self, model):
        if self.spec.hires:
            _said('"hires": ComfyUI has no hires-fix pass of its own (a second sampler is a separate run): ignored')
        clone = model.clone()
        clone.add_wrapper_with_key(patcher_extension.WrappersMP.OUTER_SAMPLE, WRAPPER_KEY, self.outer_sample)
        clone.add_wrapper_with_key(patcher_extension.WrappersMP.SAMPLER_SAMPLE, WRAPPER_KEY, self.sampler_sample)
        clone.add_wrapper_with_key(patcher_extension.WrappersMP.PREDICT_NOISE, WRAPPER_KEY, self.predict_noise)
        clone.model_options[OPTIONS_KEY] = self
        return clone

    # --------------------------------------------------------------------------- OUTER_SAMPLE
    def outer_sample(self, executor, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None,
                     disable_pbar=False, seed=None, **kwargs):
        self.runs += 1
        self.heatmaps = []
        if not self.spec.reroll or getattr(noise, "is_nested", False) or noise.dim() != 4:
            if self.spec.reroll:
                _said("region reroll needs a 4-D latent (B, C, H, W); this model's is not: left out")
            return executor(noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed, **kwargs)
        batch = int(noise.shape[0])
        regions = batch_regions(self.spec, batch)
        self.last_regions = regions
        shape = tuple(noise.shape)

        def streams_for(seeds):
            return _FirstDraw(region_initial_noise(shape, seeds).to(noise.device, noise.dtype))

        new_noise, plan = reroll_batch(noise, regions, streams_for)
        if plan is None:
            return executor(noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed, **kwargs)
        rerolled_sampler = self._following_sampler(sampler, plan, regions, seed)
        log.info("[InitEdit] reroll: %s", [[r.to_dict() for r in item] for item in regions[:1]])
        if self.spec.keep <= 0:
            return executor(new_noise, latent_image, rerolled_sampler, sigmas, denoise_mask, callback, disable_pbar,
                            seed, **kwargs)
        # keep: the base (the same sampling without the reroll) first, its denoised recorded at every call
        recorder = Recorder()
        self._keep = recorder
        self._start_clock(sigmas)
        recorder.enter()
        try:
            executor(noise.clone(), latent_image, sampler, sigmas, denoise_mask, None, True, seed, **kwargs)
            recorder.leave(True)
        except BaseException:
            recorder.leave(False)
            self._keep = None
            raise
        if len(recorder.records) != batch or not all(r.complete for r in recorder.records):
            self._keep = None
            raise RuntimeError("InitEdit keep: the base generation was not recorded completely")
        blend = KeepBlend.from_spec(recorder.records, regions, (int(noise.shape[-2]), int(noise.shape[-1])), self.spec)
        self._keep = blend
        self._start_clock(sigmas)
        try:
            return executor(new_noise, latent_image, rerolled_sampler, sigmas, denoise_mask, callback, disable_pbar,
                            seed, **kwargs)
        finally:
            self._keep = None

    def _start_clock(self, sigmas) -> None:
        """A sampling starts: its calls are counted from 0 and placed on its sigmas (both samplings of a keep,
        with or without the SAMPLER_SAMPLE wrapper running)."""
        steps = max(1, int(sigmas.shape[-1]) - 1)
        self._clock = CallClock(steps, steps, sigmas.reshape(-1).tolist())

    def _following_sampler(self, sampler, plan, regions, seed):
        """The sampler, or a stand-in whose per-step noise follows the regions' seeds (ancestral / SDE)."""
        if not self.follow_noise:
            return sampler
        kind, cpu = sampler_noise_kind(sampler)
        if kind == "none":
            return sampler
        if kind == "unknown":
            _said(f"sampler {getattr(getattr(sampler, 'sampler_function', None), '__name__', type(sampler).__name__)}"
                  ": its per-step noise does not follow the rerolled regions (only the initial noise does)")
            return sampler
        region_seeds = [[item[r].seed for item in regions] for r in plan.regions]

        def build(x, sigmas, main_seed):
            base = make_noise_sampler(kind, cpu, x, sigmas, main_seed if main_seed is not None else seed)
            own = [make_noise_sampler(kind, cpu, x, sigmas, s[0] if len(set(s)) == 1 else s) for s in region_seeds]
            return RerollNoiseSampler(base, plan, own)

        return _NoiseSamplerSampler(sampler, build)

    # --------------------------------------------------------------------------- SAMPLER_SAMPLE
    def sampler_sample(self, executor, guider, sigmas, extra_args, callback, noise, latent_image=None,
                       denoise_mask=None, disable_pbar=False):
        spec = self.spec
        self._start_clock(sigmas)
        if not spec.layout or not self.positions:
            return executor(guider, sigmas, extra_args, callback, noise, latent_image, denoise_mask, disable_pbar)
        model = guider.inner_model
        unet = getattr(model, "diffusion_model", None)
        if unet is None or not hasattr(unet, "input_blocks"):
            _said("layout needs a UNet with cross-attention (SD1/SD2/SDXL); this model has none: left out")
            return executor(guider, sigmas, extra_args, callback, noise, latent_image, denoise_mask, disable_pbar)
        batch = int(noise.shape[0])
        boxes = [[b.box for b in spec.layout]] * batch
        positions = [self.positions] * batch
        call = self._probe_call(guider, sigmas, latent_image, extra_args)
        seed = int(extra_args.get("seed") or 0)

        def candidate_noise(j):  # candidate pooling: KSampler's noise for the derived seeds
            return seed_noise(noise.shape, layout_probe.candidate_seed(seed, j)).to(noise.device, noise.dtype)

        result = layout_probe.run_layout(unet, call, noise, positions, boxes, candidate_noise=candidate_noise,
                                         **layout_probe.layout_options(spec))
        self.last_layout = result
        moved = int((result.noise != noise).any(dim=1).sum())
        log.info("[InitEdit] layout: %s; %d probe(s), %d latent cells moved, attention share in the box before -> "
                 "after: %s", [b.phrase for b in spec.layout], result.probes, moved,
                 [f"{r.share_before:.2f}->{r.share_after:.2f}" for r in (result.reports[0] if result.reports else [])])
        noise = result.noise
        guidance = None
        if spec.guidance > 0:
            guidance = LayoutGuidance.from_spec(unet, spec, positions, boxes)
            if spec.heatmaps:
                guidance.watch(layout_probe.probe_layers(unet, spec.layers))
        self._guidance = guidance if guidance is not None and guidance.enabled else None
        self._cond_rows = self._positive_rows(guider, batch)
        hooks = SamplingHooks([self._guidance])
        if self._guidance is not None:  # attn2 replace patches (IPAdapter ...) are guided too, on this run's copy
            extra_args = dict(extra_args)
            extra_args["model_options"], self.guided_blocks = HOST.guided_options(
                guider, extra_args.get("model_options") or {}, hooks)
        hooks.enter()
        completed = False
        try:
            out = executor(guider, sigmas, extra_args, callback, noise, latent_image, denoise_mask, disable_pbar)
            completed = True
        finally:
            try:
                hooks.leave(completed)
            finally:
                self._guidance, self._cond_rows = None, None
        if guidance is not None and guidance.enabled and guidance.calls_guided == 0 \
                and (self.guided_blocks is None or self.guided_blocks.calls == 0):
            _said("layout guidance found no attention call with this prompt's conditioning (e.g. the positive "
                  "and negative prompts differ in length and ComfyUI repeated them to a common one): not applied")
        if spec.heatmaps:
            self._render_heatmaps(result, guidance, noise.shape)
        return out

    def _positive_rows(self, guider, batch: int):
        conds = (getattr(guider, "conds", None) or {}).get("positive") or []
        for cond in conds:
            cross = (cond.get("model_conds") or {}).get("c_crossattn")
            tensor = getattr(cross, "cond", None)
            if isinstance(tensor, torch.Tensor):
                return [tensor[min(b, tensor.shape[0] - 1)] for b in range(batch)]
        return None

    def _probe_call(self, guider, sigmas, latent_image, extra_args):
        model = guider.inner_model
        sigma = sigmas[0]
        max_sigma = float(model.model_sampling.sigma_max)
        max_denoise = math.isclose(max_sigma, float(sigma), rel_tol=1e-05) or float(sigma) > max_sigma
        options = HOST.probe_options(extra_args.get("model_options") or {})
        positive = guider.conds.get("positive")

        def call(noise):
            latent = latent_image if latent_image is not None else torch.zeros_like(noise)
            x_in = model.model_sampling.noise_scaling(sigma, noise, latent, max_denoise)
            ts = sigma.reshape(1).expand(noise.shape[0]).to(noise.device)
            return comfy.samplers.calc_cond_batch(model, [positive], x_in, ts, options)

        return call

    def _render_heatmaps(self, result, guidance, shape) -> None:
        phrases = [b.phrase for b in self.spec.layout]
        boxes = [b.box for b in self.spec.layout]
        h, w = int(shape[-2]) * 8, int(shape[-1]) * 8
        tile = (max(96, w // 2), max(96, h // 2))
        sheets = []
        for b in range(len(result.maps_before)):
            shares = [[r.share_before, r.share_after] for r in result.reports[b]] if result.reports else []
            guided = guidance.watched_maps(b) if guidance is not None else None
            sheets.append(render(result.maps_before[b], result.maps_after[b], boxes, phrases, tile, shares,
                                 maps_guided=guided))
        self.heatmaps = sheets

    # --------------------------------------------------------------------------- PREDICT_NOISE
    def predict_noise(self, executor, x, timestep, model_options={}, seed=None):
        clock = self._clock
        if clock is None:  # a sampling this host did not see start
            return executor(x, timestep, model_options, seed)
        call = clock.next(float(timestep.reshape(-1)[0]))
        guidance = self._guidance
        if guidance is not None:
            guidance.before_call(call, self._cond_rows)
        out = executor(x, timestep, model_options, seed)
        keep = self._keep
        if keep is not None:
            new = keep.after_call(call, out)
            if new is not None:
                out = new
        return out
