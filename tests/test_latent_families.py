"""Region reroll and keep on every model family's latent conventions (lib_initedit.reroll, plain torch).

Both features act on the latent the sampler starts from and on the denoised prediction the sampler steps
with, never inside the network, so they must hold for any latent the hosts hand their samplers:

- channel counts: 4 (SD1/SD2/SDXL), 16 (SD3, Flux, Chroma, Lumina 2, Z-Image, Qwen-Image, Anima, Wan),
  32 (Flux 2's VAE unpacked), 128 (Flux 2 / ERNIE-Image: 2x2 patches of 32 channels at 1/16);
- extra axes: video-VAE families (Wan 2.1 VAE: Anima, Qwen-Image, Wan) sample a (B, C, T, H, W) latent
  (Forge Neo's txt2img builds it so for them), T = 1 for an image;
- packing: Flux's 2x2 patches are packed into tokens inside the model (Forge, Neo, ComfyUI); the sampler
  sees the unpacked latent image, so a region is a box of that image. A packing model mixes tokens, and
  keep stays exact outside (it acts on the sampler's latent, not on the tokens);
- flow matching (rectified flow): x_sigma = (1 - sigma) x0 + sigma noise, the model predicts the velocity
  v and denoised = x - sigma v; sigma_max = 1 whatever the shift, so the starting latent is the noise
  itself; shifted sigmas, "Simple" and "Beta" schedules; deterministic Euler and the ancestral
  ("Euler a") flow step with per-step noise.

The identities checked, with an independent reference each time: outside the regions the noise is the
base's bit for bit; at strength 1 a whole-image reroll is seed R's noise and seed R's whole trajectory;
strength 0 changes nothing; keep 1 keeps the latent outside bit for bit through every step.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lib_initedit.reroll.keep import KeepBlend, Recorder, keep_mask
from lib_initedit.reroll.noise import blend, region_weight, reroll_batch, spatial_weight
from lib_initedit.reroll.noise_stream import RerollStream
from lib_initedit.sampling_hooks import Call, SamplingHooks
from lib_initedit.spec import RerollRegion

# family: (latent channels, extra axes between channels and the image (video-VAE frames), prediction, shift).
# From the hosts' model definitions (Forge Neo 2.26 huggingface_guess model_list / latent formats, ComfyUI's
# supported_models, A1111 1.10's SD3); what the sampler sees, per image, is (C, *extra, H, W).
FAMILIES = {
    "sd15": (4, (), "eps", None),
    "sdxl": (4, (), "eps", None),
    "sd3": (16, (), "flow", 3.0),
    "flux": (16, (), "flow", 1.15),
    "chroma": (16, (), "flow", 1.0),
    "lumina2": (16, (), "flow", 6.0),
    "zimage": (16, (), "flow", 3.0),
    "qwen_image": (16, (1,), "flow", 1.15),
    "anima": (16, (1,), "flow", 3.0),
    "wan_video": (16, (3,), "flow", 8.0),
    "mugen": (32, (), "flow", 12.0),
    "flux2": (128, (), "flow", 2.02),
}
H, W = 8, 12  # latent image (a non-square one: rows and columns are not swapped anywhere)


class SeedStream:
    """A host's per-batch noise stream (the WebUI's ImageRNG): one generator per image, ``next()`` draws
    (B, *shape) standard normal noise, the first draw being the initial noise."""

    def __init__(self, shape, seeds):
        self.shape = tuple(shape)
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]

    def next(self) -> torch.Tensor:
        return torch.stack([torch.randn(self.shape, generator=g) for g in self.generators])


def latent_shape(family):
    channels, extra, _, _ = FAMILIES[family]
    return (channels, *extra, H, W)


def outside(t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The elements of t (B, C, ..., H, W) where the (H, W) mask is 0, all channels and frames."""
    sel = (mask == 0).expand(t.shape)
    return t[sel]


BOX = (0.25, 0.25, 0.75, 0.625)  # latent cells [3, 9) x [2, 5) of 12 x 8
BOX_MASK = torch.zeros(H, W)
BOX_MASK[2:5, 3:9] = 1


# ------------------------------------------------------------------------------ noise: any latent layout
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_box_reroll_changes_the_box_only_on_every_channel_and_frame(family):
    shape = latent_shape(family)
    seeds, reroll_seeds = [11, 12], [901, 902]
    x = SeedStream(shape, seeds).next()
    regions = [[RerollRegion(box=BOX, seed=s, strength=1.0)] for s in reroll_seeds]
    out, plan = reroll_batch(x.clone(), regions, lambda ss: SeedStream(shape, ss))
    fresh = SeedStream(shape, reroll_seeds).next()
    inside = BOX_MASK.bool().expand(out.shape)
    assert out.shape == x.shape
    assert torch.equal(outside(out, BOX_MASK), outside(x, BOX_MASK))  # bit for bit, every channel and frame
    assert torch.equal(out[inside], fresh[inside])  # strength 1: the reroll seed's own noise inside
    assert plan is not None and plan.weights[0].shape == (2, 1, H, W)


@pytest.mark.parametrize("family", ["sd15", "flux", "anima", "wan_video", "flux2"])
def test_whole_reroll_at_strength_1_is_the_reroll_seeds_noise_and_strength_0_changes_nothing(family):
    shape = latent_shape(family)
    x = SeedStream(shape, [5]).next()
    whole, _ = reroll_batch(x.clone(), [[RerollRegion(box=(0, 0, 1, 1), seed=77, strength=1.0)]],
                            lambda ss: SeedStream(shape, ss))
    assert torch.equal(whole, SeedStream(shape, [77]).next())
    zero, plan = reroll_batch(x.clone(), [[RerollRegion(box=(0, 0, 1, 1), seed=77, strength=0.0)]],
                              lambda ss: SeedStream(shape, ss))
    assert plan is None and torch.equal(zero, x)


@pytest.mark.parametrize("channels,extra", [(4, ()), (16, ()), (16, (1,)), (128, ())])
def test_partial_strength_keeps_the_noise_standard_normal(channels, extra):
    """sqrt(1-w^2) a + w b of independent standard normals: unit variance at any channel count and layout."""
    shape = (channels, *extra, 32, 32)
    n = 64 if channels < 128 else 8
    x = SeedStream(shape, range(n)).next()
    out, _ = reroll_batch(x, [[RerollRegion(box=(0, 0, 1, 1), seed=1000 + i, strength=0.6)] for i in range(n)],
                          lambda ss: SeedStream(shape, ss))
    samples = out.numel()
    assert abs(float(out.mean())) < 5 / math.sqrt(samples)
    assert abs(float(out.var()) - 1.0) < 8 * math.sqrt(2 / samples)
    # and against the per-element reference formula
    fresh = SeedStream(shape, [1000 + i for i in range(n)]).next()
    assert torch.allclose(out, math.sqrt(1 - 0.36) * x + 0.6 * fresh, atol=1e-6)


def test_spatial_weight_broadcasts_over_channels_and_frames_per_image():
    """A (B, 1, H, W) weight on a (B, C, T, H, W) latent: image b's weight on every channel and frame of
    image b (plain right-aligned broadcasting would pair the batch axis with the channels)."""
    w = torch.stack([torch.zeros(H, W), torch.ones(H, W)])[:, None]
    x = torch.zeros(2, 16, 3, H, W)
    assert spatial_weight(w, x).shape == (2, 1, 1, H, W)
    out = blend(x, torch.ones_like(x), w)
    assert torch.equal(out[0], torch.zeros(16, 3, H, W)) and torch.equal(out[1], torch.ones(16, 3, H, W))
    assert spatial_weight(w, torch.zeros(2, 4, H, W)) is w  # 4-D latents: as before


# ------------------------------------------------------------------------------ packed latents (Flux)
def pack(x: torch.Tensor, p: int = 2) -> torch.Tensor:
    """Flux's patchify: (B, C, H, W) -> (B, H/p * W/p, C*p*p) tokens, row-major patches."""
    b, c, h, w = x.shape
    return x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // p) * (w // p), c * p * p)


def unpack(t: torch.Tensor, c: int, h: int, w: int, p: int = 2) -> torch.Tensor:
    b = t.shape[0]
    return t.reshape(b, h // p, w // p, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def test_packing_is_a_permutation_so_a_region_is_a_box_of_the_latent_image():
    x = torch.randn(2, 16, H, W)
    assert torch.equal(unpack(pack(x), 16, H, W), x)
    # rerolling the unpacked latent, then packing = packing both and blending token-wise with the packed weight
    fresh = torch.randn_like(x)
    weight = region_weight(RerollRegion(box=(0.1, 0.2, 0.55, 0.9), feather=0.1), H, W)[None, None].expand(2, 1, H, W)
    packed_weight = pack(weight.expand(2, 16, H, W))
    assert torch.equal(pack(blend(x, fresh, weight)), blend(pack(x), pack(fresh), packed_weight))
    # a 2x2 patch half inside the box (odd box edges) gets a per-cell weight, not one per token
    odd = region_weight(RerollRegion(box=(0, 0, 3 / W, 1)), H, W)
    assert odd[:, :3].eq(1).all() and odd[:, 3:].eq(0).all()


# ------------------------------------------------------------------------------ flow-matching sampling
def shift_sigma(s: torch.Tensor, shift: float) -> torch.Tensor:
    """Rectified-flow time shift (SD3 / Lumina / Z-Image / Qwen): s' = shift s / (1 + (shift - 1) s)."""
    return shift * s / (1 + (shift - 1) * s)


def model_sigmas(shift: float, n: int = 1000) -> torch.Tensor:
    """The model's sigma table, ascending, as flow models tabulate it (t = i / n, shifted)."""
    return shift_sigma(torch.arange(1, n + 1, dtype=torch.float64) / n, shift)


def simple_schedule(table: torch.Tensor, steps: int) -> torch.Tensor:
    """'Simple': evenly spaced entries of the table from the top, then 0."""
    stride = len(table) / steps
    return torch.cat([torch.stack([table[-(1 + int(i * stride))] for i in range(steps)]), torch.zeros(1, dtype=table.dtype)])


def beta_schedule(table: torch.Tensor, steps: int, a: float = 0.6, b: float = 0.6) -> torch.Tensor:
    """'Beta': table entries at the quantiles of Beta(a, b) (denser at both ends), then 0; the quantiles by
    inverting the numerically integrated CDF (an independent stand-in for scipy's ppf)."""
    grid = torch.linspace(0, 1, 200001, dtype=torch.float64)[1:-1]
    pdf = grid ** (a - 1) * (1 - grid) ** (b - 1)
    cdf = torch.cumsum(pdf, 0)
    cdf = cdf / cdf[-1]
    q = 1 - torch.linspace(0, 1, steps, dtype=torch.float64)
    ts = grid[torch.searchsorted(cdf, q.clamp(1e-9, 1 - 1e-9))]
    idx = (ts * (len(table) - 1)).round().long()
    return torch.cat([table[idx], torch.zeros(1, dtype=table.dtype)])


class VelocityModel(torch.nn.Module):
    """A stand-in flow network that mixes across the whole latent (3x3 convolutions, a global term and,
    optionally, Flux-style 2x2 packing with token mixing), so every output cell depends on cells across any
    region edge: keep's exactness must not rely on locality. Works on (B, C, *extra, H, W)."""

    def __init__(self, channels: int, packed: bool, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.packed = packed
        self.conv = torch.nn.Parameter(torch.randn(channels, channels, 3, 3, generator=g) / (3 * channels ** 0.5))
        self.mix = torch.nn.Parameter(torch.randn(channels * 4, channels * 4, generator=g) / (channels * 4) ** 0.5)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: float) -> torch.Tensor:
        shape = x.shape
        x4 = x.reshape(-1, shape[1], shape[-2], shape[-1]) if x.dim() == 5 else x  # frames: T = 1 here
        v = F.conv2d(x4, self.conv, padding=1) * (1 + float(sigma)) + cond * x4.mean(dim=(-2, -1), keepdim=True)
        if self.packed:
            tokens = pack(v)
            tokens = tokens @ self.mix + tokens.mean(dim=1, keepdim=True)  # token mixing inside the model
            v = unpack(tokens, shape[1], shape[-2], shape[-1])
        return v.reshape(shape)


def flow_denoiser(model: VelocityModel, cfg: float = 4.0):
    """The host's CFG denoiser for a flow model: denoised = x - sigma * v, classifier-free guidance on it."""
    def denoise(x, sigma):
        cond = x - sigma * model(x, sigma, 1.0)
        uncond = x - sigma * model(x, sigma, 0.0)
        return uncond + cfg * (cond - uncond)
    return denoise


def sample_flow(x, sigmas, denoise, hooks: SamplingHooks, stream=None, eta: float = 0.0, trace=None):
    """Euler on the flow ODE (k-diffusion's form: d = (x - denoised) / sigma), or with eta > 0 the
    ancestral rectified-flow step, which steps down to sigma_down and re-noises with the stream's next
    draw. The start latent is the noise: x_T = sigma_max * noise with sigma_max = 1 (any shift)."""
    total = len(sigmas) - 1
    with hooks.running():
        for i in range(total):
            sigma, nxt = sigmas[i], sigmas[i + 1]
            hooks.before_call(Call.plain(i, total), None)
            denoised = denoise(x, sigma)
            changed = hooks.after_call(Call.plain(i, total), denoised)
            denoised = denoised if changed is None else changed
            if eta == 0 or nxt == 0:
                x = x + (x - denoised) / sigma * (nxt - sigma)
            else:
                down = nxt * (1 + (nxt / sigma - 1) * eta)
                alpha_next, alpha_down = 1 - nxt, 1 - down
                renoise = (nxt ** 2 - down ** 2 * alpha_next ** 2 / alpha_down ** 2) ** 0.5
                x = (down / sigma) * x + (1 - down / sigma) * denoised
                x = (alpha_next / alpha_down) * x + stream.next() * renoise
            if trace is not None:
                trace.append(x.clone())
    return x


FLOW_CASES = [  # (family, schedule, eta): every flow family's layout, both schedules, Euler and Euler a
    ("sd3", "simple", 0.0), ("flux", "beta", 0.0), ("flux", "simple", 1.0), ("zimage", "beta", 1.0),
    ("anima", "simple", 0.0), ("qwen_image", "beta", 1.0), ("flux2", "simple", 0.0), ("chroma", "beta", 0.0),
]


def setup_flow(family, schedule, steps=6):
    channels, extra, prediction, shift = FAMILIES[family]
    assert prediction == "flow"
    table = model_sigmas(shift)
    sigmas = (simple_schedule if schedule == "simple" else beta_schedule)(table, steps).float()
    assert float(sigmas[0]) == pytest.approx(1.0, abs=1e-6) and float(sigmas[-1]) == 0.0
    assert bool((sigmas[:-1] > sigmas[1:]).all())
    model = VelocityModel(channels, packed=family in ("flux", "chroma", "flux2"))
    return (channels, *extra, H, W), sigmas, flow_denoiser(model)


def run(shape, sigmas, denoise, seeds, regions=None, eta=0.0, hooks=(), trace=None):
    """One generation as the host runs it: x_T from the seeds' stream, the reroll on it, per-step noise
    through the same stream (RerollStream when rerolled), the sampler."""
    stream = SeedStream(shape, seeds)
    x = stream.next()
    if regions is not None:
        x, plan = reroll_batch(x, regions, lambda ss: SeedStream(shape, ss))
        if plan is not None:
            stream = RerollStream(stream, plan)
    return sample_flow(x, sigmas, denoise, SamplingHooks(list(hooks)), stream, eta, trace)


@pytest.mark.parametrize("family,schedule,eta", FLOW_CASES)
def test_flow_whole_reroll_at_strength_1_is_the_reroll_seeds_trajectory(family, schedule, eta):
    shape, sigmas, denoise = setup_flow(family, schedule)
    with torch.no_grad():
        a, b = [], []
        rerolled = run(shape, sigmas, denoise, [3, 4], [[RerollRegion(box=(0, 0, 1, 1), seed=s)] for s in (50, 51)],
                       eta=eta, trace=a)
        plain = run(shape, sigmas, denoise, [50, 51], eta=eta, trace=b)
    assert torch.equal(rerolled, plain)
    assert all(torch.equal(p, q) for p, q in zip(a, b))  # every step, per-step noise included


@pytest.mark.parametrize("family,schedule,eta", FLOW_CASES)
def test_flow_keep_1_keeps_the_outside_bit_for_bit_at_every_step(family, schedule, eta):
    shape, sigmas, denoise = setup_flow(family, schedule)
    seeds = [8, 9]
    regions = [[RerollRegion(box=BOX, seed=s, strength=1.0, feather=0.1)] for s in (70, 71)]
    with torch.no_grad():
        recorder, base_trace = Recorder(), []
        base = run(shape, sigmas, denoise, seeds, eta=eta, hooks=[recorder], trace=base_trace)
        assert all(r.complete and len(r) == len(sigmas) - 1 for r in recorder.records)
        masks = torch.stack([keep_mask(r, H, W) for r in regions])
        keep, trace = KeepBlend(recorder.records, masks, 1.0), []
        kept = run(shape, sigmas, denoise, seeds, regions, eta=eta, hooks=[keep], trace=trace)
        free = run(shape, sigmas, denoise, seeds, regions, eta=eta)
    out_mask = masks[0]  # the same box in both images
    for step, (x, y) in enumerate(zip(trace, base_trace)):
        assert torch.equal(outside(x, out_mask), outside(y, out_mask)), f"step {step}"
    inside = out_mask.eq(1).expand(kept.shape)
    assert not torch.equal(kept[inside], base[inside])  # the region did change
    # without keep the model's mixing carries the region's change outside (what keep is for)
    assert not torch.equal(outside(free, out_mask), outside(base, out_mask))


@pytest.mark.parametrize("family", ["flux", "anima"])
def test_flow_keep_half_follows_the_base_for_the_kept_calls_then_runs_free(family):
    shape, sigmas, denoise = setup_flow(family, "simple", steps=8)
    seeds, regions = [1], [[RerollRegion(box=BOX, seed=99)]]
    with torch.no_grad():
        recorder, base_trace = Recorder(), []
        run(shape, sigmas, denoise, seeds, hooks=[recorder], trace=base_trace)
        keep, trace = KeepBlend(recorder.records, keep_mask(regions[0], H, W)[None], 0.5), []
        run(shape, sigmas, denoise, seeds, regions, hooks=[keep], trace=trace)
    assert keep.kept(Call.plain(0, 8)) == 4
    for step in range(4):  # the state after each kept call: the base's outside
        assert torch.equal(outside(trace[step], BOX_MASK), outside(base_trace[step], BOX_MASK))
    assert not torch.equal(outside(trace[-1], BOX_MASK), outside(base_trace[-1], BOX_MASK))


def test_flow_start_latent_is_the_noise_at_any_shift():
    """sigma_max = 1 under every shift, so a flow sampler starts from the noise itself (x_T = 1 * noise),
    and the reroll of the noise is the reroll of the start latent; eps models scale it by sigma_max."""
    for shift in (1.0, 1.15, 3.0, 6.0, 12.0):
        table = model_sigmas(shift)
        assert float(table[-1]) == 1.0 and float(simple_schedule(table, 10)[0]) == 1.0
        assert float(beta_schedule(table, 10)[0]) == pytest.approx(1.0, abs=1e-3)
    # denoised = x - sigma v is the flow prediction of x0: with x = (1 - s) x0 + s n and v = n - x0 it is x0
    x0, n, s = torch.randn(4, 16, H, W), torch.randn(4, 16, H, W), 0.37
    assert torch.allclose((1 - s) * x0 + s * n - s * (n - x0), x0, atol=1e-6)


def test_keep_on_video_vae_latents_with_a_batch_of_two():
    """Image b's mask on every channel and frame of image b (a (B, 1, H, W) mask broadcast as it is would pair
    the batch axis with the channels)."""
    shape, sigmas, denoise = setup_flow("anima", "simple", steps=3)
    seeds, regions = [1, 2], [[RerollRegion(box=BOX, seed=s)] for s in (5, 6)]
    with torch.no_grad():
        recorder, base_trace = Recorder(), []
        run(shape, sigmas, denoise, seeds, hooks=[recorder], trace=base_trace)
        keep, trace = KeepBlend(recorder.records, torch.stack([keep_mask(r, H, W) for r in regions]), 1.0), []
        run(shape, sigmas, denoise, seeds, regions, hooks=[keep], trace=trace)
    assert torch.equal(outside(trace[-1], BOX_MASK), outside(base_trace[-1], BOX_MASK))
