"""Keep the rest (lib_initedit.reroll.keep): exact identities of the keep step, the recorder and the bounded cache."""
import math
import random

import pytest
import torch

from lib_initedit.reroll.keep import (BaseCache, BaseRecord, KeepBlend, Recorder, bytes_per_call, keep_mask,
                               kept_calls)
from lib_initedit.reroll.noise import region_weight
from lib_initedit.reroll.release import release_map
from lib_initedit.sampling_hooks import Call, CallClock, SamplingHooks
from lib_initedit.spec import RerollRegion


def record(calls, shape=(4, 8, 8), seed=0, complete=True):
    g = torch.Generator().manual_seed(seed)
    return BaseRecord([torch.randn(shape, generator=g) for _ in range(calls)], complete)


def test_kept_calls_is_the_floor_of_the_fraction_without_float_surprises():
    assert kept_calls(0.0, 20) == 0
    assert kept_calls(1.0, 20) == 20
    assert kept_calls(0.3, 20) == 6  # 0.3 * 20 = 6.000000000000001
    assert kept_calls(0.7, 10) == 7  # 0.7 * 10 = 6.999999999999999
    assert kept_calls(0.25, 20) == 5
    assert kept_calls(0.5, 0) == 0


def test_keep_mask_is_geometry_without_strength_and_unites_regions():
    a = RerollRegion(box=(0, 0, 0.5, 0.5), strength=0.3)
    m = keep_mask([a], 8, 8)
    assert torch.equal(m[:4, :4], torch.ones(4, 4)) and m.sum() == 16  # strength ignored
    b = RerollRegion(box=(0.25, 0.25, 0.75, 0.75))
    u = keep_mask([a, b], 8, 8)
    assert torch.equal(u, torch.maximum(keep_mask([a], 8, 8), keep_mask([b], 8, 8)))  # 0/1 masks: union = max
    f = RerollRegion(box=(0.25, 0.25, 0.75, 0.75), feather=0.2)
    mf = keep_mask([f], 16, 16)
    assert torch.equal(mf, region_weight(f, 16, 16))
    assert mf[:4].sum() == 0 and 0 < mf[5, 5] < 1 and mf[8, 8] == 1
    assert keep_mask([], 4, 4).sum() == 0


def test_keep_0_never_changes_anything():
    base = record(10)
    blend = KeepBlend([base, base], torch.zeros(2, 8, 8), 0.0)
    x = torch.randn(2, 4, 8, 8)
    for i in range(10):
        assert blend.after_call(Call.plain(i, 10), x) is None


def test_outside_is_the_base_inside_is_untouched_and_later_calls_are_free():
    b0, b1 = record(10, seed=1), record(10, seed=2)
    masks = torch.zeros(2, 8, 8)
    masks[:, 2:5, 3:7] = 1.0
    blend = KeepBlend([b0, b1], masks, 0.5)
    assert blend.kept(Call.plain(0, 10)) == 5
    for i in range(10):
        x = torch.randn(2, 4, 8, 8)
        out = blend.after_call(Call.plain(i, 10), x)
        if i >= 5:
            assert out is None
            continue
        inside = masks[:, None].expand_as(x).bool()
        assert torch.equal(out[inside], x[inside])
        base = torch.stack([b0.calls[i], b1.calls[i]])
        assert torch.equal(out[~inside], base[~inside])


def test_soft_edge_blends_linearly_and_dtype_and_device_follow_the_prediction():
    base = record(4)
    masks = torch.full((1, 8, 8), 0.25)
    x = torch.randn(1, 4, 8, 8).half()
    out = KeepBlend([base], masks, 1.0).after_call(Call.plain(2, 4), x)
    assert out.dtype == torch.float16
    want = (0.25 * x.float() + 0.75 * base.calls[2][None]).half()
    assert torch.equal(out, want)


def test_one_record_serves_a_whole_batch():
    base = record(3)
    masks = torch.zeros(4, 8, 8)
    masks[:, :4] = 1
    out = KeepBlend([base] * 4, masks, 1.0).after_call(Call.plain(1, 3), torch.randn(4, 4, 8, 8))
    for b in range(4):
        assert torch.equal(out[b, :, 4:], base.calls[1][:, 4:])


def test_calls_past_a_short_record_are_left_alone():
    blend = KeepBlend([record(4)], torch.zeros(1, 8, 8), 1.0)
    assert blend.kept(Call.plain(0, 4)) == 4 and blend.after_call(Call.plain(4, 4), torch.zeros(1, 4, 8, 8)) is None
    assert blend.after_call(Call.plain(4, 8), torch.zeros(1, 4, 8, 8)) is None  # past the record
    with pytest.raises(ValueError):
        KeepBlend([record(4)], torch.zeros(2, 8, 8), 1.0)


def test_from_regions_builds_the_masks_from_each_images_regions():
    regions = [[RerollRegion(box=(0, 0, 0.5, 1))], [RerollRegion(box=(0.5, 0, 1, 1), strength=0.1)]]
    blend = KeepBlend.from_regions([record(2)] * 2, regions, (8, 8), 1.0)
    assert blend.masks.shape == (2, 1, 8, 8)
    assert blend.masks[0, 0, :, :4].min() == 1 and blend.masks[0, 0, :, 4:].max() == 0
    assert blend.masks[1, 0, :, 4:].min() == 1 and blend.masks[1, 0, :, :4].max() == 0


def test_recorder_copies_each_call_per_image_and_reports_only_complete_generations():
    got = []
    rec = Recorder(on_complete=got.append)
    rec.enter()
    xs = [torch.randn(2, 4, 8, 8) for _ in range(3)]
    for i, x in enumerate(xs):
        assert rec.after_call(Call.plain(i, 3), x) is None
    xs[0].zero_()  # the host reusing its tensor does not touch the record
    rec.leave(True)
    assert len(got) == 1 and len(got[0]) == 2
    assert all(r.complete and len(r) == 3 for r in got[0])
    assert not torch.equal(got[0][0].calls[0], xs[0][0])
    assert torch.equal(got[0][1].calls[2], xs[2][1])
    assert got[0][0].calls[0].device.type == "cpu"
    assert got[0][0].nbytes == 3 * bytes_per_call((4, 8, 8))

    rec.enter()
    rec.after_call(Call.plain(0, 3), xs[0])
    rec.leave(False)  # interrupted
    assert len(got) == 1 and not rec.records[0].complete

    rec.enter()
    rec.after_call(Call.plain(0, 3), xs[0])
    rec.after_call(Call.plain(2, 3), xs[2])  # a call went missing: the record is not trusted
    rec.leave(True)
    assert len(got) == 1


def test_keep_then_record_through_sampling_hooks():
    base = record(2)
    masks = torch.zeros(1, 8, 8)
    keep = KeepBlend([base], masks, 1.0)
    rec = Recorder()
    hooks = SamplingHooks([keep, rec])
    hooks.enter()
    x = torch.randn(1, 4, 8, 8)
    out = hooks.after_call(Call.plain(0, 2), x)
    assert torch.equal(out[0], base.calls[0])  # mask 0: all outside
    assert torch.equal(rec.records[0].calls[0], base.calls[0])  # the recorder saw what the sampler steps with
    assert SamplingHooks([KeepBlend([base], masks, 0.0), Recorder()]).after_call(Call.plain(0, 2), x) is None


def test_bytes_per_call_formula():
    assert bytes_per_call((4, 64, 64)) == 65536
    assert bytes_per_call((4, 64, 64), torch.float16) == 32768


def test_cache_miss_hit_and_lru_eviction():
    per = record(5).nbytes
    cache = BaseCache(3 * per)
    assert cache.get("a") is None
    for k in "abc":
        assert cache.put(k, record(5))
    assert cache.get("a") is not None  # a is now the most recent
    assert cache.put("d", record(5))
    assert cache.get("b") is None and all(k in cache for k in "acd")
    assert cache.nbytes == 3 * per
    assert not cache.put("big", record(20))  # alone larger than the cap: nothing stored, nothing evicted
    assert len(cache) == 3
    assert not cache.put("partial", record(5, complete=False))
    assert not cache.put("empty", BaseRecord([], True))
    assert cache.put("a", record(5, seed=9))  # replacing a key does not count it twice
    assert cache.nbytes == 3 * per and len(cache) == 3
    cache.resize(per)
    assert len(cache) == 1 and "a" in cache and cache.nbytes == per
    cache.clear()
    assert len(cache) == 0 and cache.nbytes == 0
    off = BaseCache(0)
    assert not off.put("a", record(1)) and off.get("a") is None


def test_cache_never_exceeds_its_cap():
    rnd = random.Random(3)
    cap = 10_000
    cache = BaseCache(cap)
    for step in range(300):
        calls = rnd.randint(1, 6)
        cache.put(rnd.randint(0, 30), record(calls, shape=(4, 4, 4 * rnd.randint(1, 4))))
        if rnd.random() < 0.3:
            cache.get(rnd.randint(0, 30))
        assert cache.nbytes <= cap
        assert cache.nbytes == sum(r.nbytes for r in cache._entries.values())


class _MixingModel:
    """A stand-in denoiser whose prediction at a pixel depends on its neighbours (like a UNet's reach)."""

    def __init__(self, c=4):
        g = torch.Generator().manual_seed(0)
        self.w = torch.randn(c, c, 3, 3, generator=g) * 0.2

    def __call__(self, x, sigma):
        return torch.tanh(torch.nn.functional.conv2d(x, self.w, padding=1)) / (1 + sigma)


def _euler(model, x, sigmas, part=None, noise=None):
    """k-diffusion-style Euler (ancestral when ``noise`` is given), one denoiser call per step, with ``part``
    run as a ``SamplingHooks`` part the way a host runs it; returns the x the model saw at every call."""
    seen = []
    with SamplingHooks([part]).running() as hooks:
        for i in range(len(sigmas) - 1):
            seen.append(x.clone())
            x = _euler_step(model, x, sigmas, i, hooks, noise)
    seen.append(x)
    return seen


def _euler_step(model, x, sigmas, i, hooks, noise):
    d_ = model(x, sigmas[i])
    changed = hooks.after_call(Call.plain(i, len(sigmas) - 1), d_)
    d_ = d_ if changed is None else changed
    s, s_next = sigmas[i], sigmas[i + 1]
    if noise is None:
        return x + (x - d_) / s * (s_next - s)
    down = s_next * 0.8
    up = (s_next ** 2 - down ** 2) ** 0.5
    return x + (x - d_) / s * (down - s) + noise[i] * up


@pytest.mark.parametrize("ancestral", [False, True])
def test_outside_stays_exactly_on_the_base_trajectory_during_the_kept_steps(ancestral):
    model = _MixingModel()
    sigmas = torch.linspace(10, 0.1, 11).tolist()
    g = torch.Generator().manual_seed(1)
    x_T = torch.randn(1, 4, 12, 12, generator=g) * sigmas[0]
    step_noise = torch.randn(10, 1, 4, 12, 12, generator=g) if ancestral else None
    inside = torch.zeros(1, 12, 12)
    inside[:, 3:8, 4:9] = 1
    rec = Recorder()
    base = _euler(model, x_T, sigmas, rec, step_noise)
    x_new = torch.where(inside.bool(), torch.randn(1, 4, 12, 12, generator=g) * sigmas[0], x_T)
    new_noise = None
    if ancestral:  # inside the region the per-step noise follows the reroll seed; outside it is the base's
        new_noise = torch.where(inside.bool(), torch.randn(10, 1, 4, 12, 12, generator=g), step_noise)
    free = _euler(model, x_new, sigmas, None, new_noise)
    kept = _euler(model, x_new, sigmas, KeepBlend(rec.records, inside, 0.6), new_noise)
    out = ~inside.bool().expand(1, 4, 12, 12)
    assert not torch.equal(free[3][out], base[3][out])  # without keep the outside drifts
    for i in range(7):  # 6 kept calls: x after each of them is the base's outside
        assert torch.equal(kept[i][out], base[i][out]), i
    assert not torch.equal(kept[8][out], base[8][out])  # then it runs free again


# ---------------------------------------------------------------- the release map (lib_initedit.reroll.release)
def _box_distance(box_cells, y, x):
    """Distance from cell (y, x)'s centre to the rectangle of cells [y0, y1) x [x0, x1), by hand."""
    (y0, y1), (x0, x1) = box_cells
    cy, cx = y + 0.5, x + 0.5
    dy = max(y0 - cy, 0.0, cy - y1)
    dx = max(x0 - cx, 0.0, cx - x1)
    return math.hypot(dy, dx)


@pytest.mark.parametrize("shape, formula", [("linear", lambda t: t), ("smoothstep", lambda t: t * t * (3 - 2 * t)),
                                            ("early-smooth", lambda t: t ** 3 * (4 - 3 * t)),
                                            ("at-once", lambda t: 0.1)])
def test_release_map_of_a_box_against_a_hand_computed_reference(shape, formula):
    region = RerollRegion(box=(0.25, 0.25, 0.5, 0.5), seed=1)  # cells 3..5 of 12 in both axes
    band = 0.25  # band: 3 cells
    got = release_map([region], 12, 12, band, shape)
    for y in range(12):
        for x in range(12):
            d = _box_distance(((3, 6), (3, 6)), y, x)
            want = 0.0 if d == 0 else formula(d / 3.0) if d < 3.0 else 1.0
            assert got[y, x].item() == pytest.approx(want, abs=1e-6), (y, x)
    assert got[3, 2].item() == pytest.approx(formula(0.5 / 3))  # the first ring: half a cell away
    assert got[0, 0].item() == 1.0  # sqrt(2) * 2.5 cells: beyond the band


def test_release_map_of_a_mask_is_the_distance_to_its_cells():
    import base64
    import io

    from PIL import Image

    img = Image.new("L", (16, 16), 0)
    for x, y in [(3, 3), (4, 3), (5, 3), (5, 4), (5, 5), (11, 12)]:  # an L and a lone cell
        img.putpixel((x, y), 255)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    region = RerollRegion(mask=base64.b64encode(buf.getvalue()).decode(), seed=1, feather=0.2)
    cells = {(3, 3), (3, 4), (3, 5), (4, 5), (5, 5), (12, 11)}  # (y, x)
    got = release_map([region], 16, 16, 0.25, "linear")  # band: 4 cells; feather does not move the band
    for y in range(16):
        for x in range(16):
            d = min(_box_distance(((cy, cy + 1), (cx, cx + 1)), y, x) for cy, cx in cells)
            want = 0.0 if d == 0 else d / 4 if d < 4 else 1.0
            assert got[y, x].item() == pytest.approx(want, abs=1e-5), (y, x)


def test_band_0_and_keep_0_release_nothing_early():
    region = RerollRegion(box=(0.2, 0.2, 0.6, 0.5), seed=1)
    assert torch.equal(release_map([region], 10, 10, 0.0), torch.ones(10, 10))
    x = torch.randn(1, 4, 10, 10)
    assert KeepBlend.from_regions([record(7)], [[region]], (10, 10), 0.0, band=0.2).after_call(Call.plain(0, 7), x) is None
    with pytest.raises(ValueError):
        release_map([region], 10, 10, 0.2, "wavy")


def test_band_0_is_the_keep_without_a_band_bit_for_bit():
    """band 0: x0' = m x0 + (1 - m) base for the first K calls, then nothing: the formula of before the band."""
    regions = [[RerollRegion(box=(0.13, 0.2, 0.61, 0.7), feather=0.1)]]
    base = record(10)
    blend = KeepBlend.from_regions([base], regions, (8, 8), 0.5, band=0.0)
    m = keep_mask(regions[0], 8, 8)[None, None]
    for i in range(10):
        x = torch.randn(1, 4, 8, 8)
        out = blend.after_call(Call.plain(i, 10), x)
        if i >= 5:
            assert out is None
        else:
            assert torch.equal(out, m * x + (1 - m) * base.calls[i][None])


@pytest.mark.parametrize("soft", [False, True])
def test_release_blend_follows_until_the_release_call_then_runs_free(soft):
    """Before its release an element takes its coverage m of the new prediction (soft: at least 1 - its release
    fraction, so the band already moves a little, the nearer the more); from its release all of it."""
    region = RerollRegion(box=(0.3, 0.3, 0.55, 0.6), seed=1)  # cell edges cut: fractional coverage at the rim
    base = record(12, shape=(4, 16, 16))
    blend = KeepBlend.from_regions([base], [[region]], (16, 16), 1.0, band=0.2, soft=soft)
    rel, m = release_map([region], 16, 16, 0.2)[None, None], keep_mask([region], 16, 16)[None, None]
    assert torch.equal(blend.release, rel)
    floor = torch.maximum(m, 1 - rel) if soft else m  # by hand: the share taken before the release
    assert soft == bool(((floor > m) & (rel < 1)).any()) and torch.equal(floor[rel >= 1], m[rel >= 1])
    m = floor
    rel = 12.0 * rel  # the release calls: 12 kept (keep 1 of 12 steps)
    last = math.ceil(float(rel[m < 1].max()))
    for i in range(12):
        x = torch.randn(1, 4, 16, 16)
        out = blend.after_call(Call.plain(i, 12), x)
        if i >= last:
            assert out is None
            continue
        follow = ((m == 0) & (rel > i)).expand_as(x)
        free = (rel <= i).expand_as(x)
        held = ((m > 0) & (rel > i)).expand_as(x)
        assert torch.equal(out[follow], base.calls[i][None].expand_as(x)[follow])  # the base, bit for bit
        assert torch.equal(out[free], x[free])
        want = (m * x + (1 - m) * base.calls[i][None])[held]
        assert torch.equal(out[held], want)  # a rim cell not yet released: blended by its coverage


def test_a_batch_with_different_regions_equals_each_image_alone():
    regions = [[RerollRegion(box=(0.1, 0.1, 0.4, 0.5))], [RerollRegion(box=(0.5, 0.2, 0.9, 0.6), feather=0.1)],
               [RerollRegion(box=(0.1, 0.1, 0.4, 0.5))]]
    bases = [record(6, seed=s) for s in (1, 2, 1)]
    together = KeepBlend.from_regions(bases, regions, (8, 8), 1.0, band=0.25)
    alone = [KeepBlend.from_regions([b], [r], (8, 8), 1.0, band=0.25) for b, r in zip(bases, regions)]
    for i in range(6):
        x = torch.randn(3, 4, 8, 8)
        out = together.after_call(Call.plain(i, 6), x)
        for b in range(3):
            one = alone[b].after_call(Call.plain(i, 6), x[b:b + 1])
            assert torch.equal(out[b:b + 1], x[b:b + 1] if one is None else one)


def _sample(kind, model, x, sigmas, hooks, noise=None, calls=None):
    """k-diffusion-style samplers, elementwise in (x, denoised): euler, euler_a (with ``noise``), heun (two calls
    a step), dpmpp_2m (uses the previous call's denoised). Returns the x the model saw at every call; ``calls``
    (a list) receives each call's ``Call``."""
    calls = [] if calls is None else calls
    seen = []
    steps = len(sigmas) - 1
    clock = CallClock((2 if kind == "heun" else 1) * steps, steps, sigmas)  # as a host places its calls

    def denoise(x_, s):
        seen.append(x_.clone())
        d = model(x_, s)
        call = clock.next(s)
        calls.append(call)
        changed = hooks.after_call(call, d)
        return d if changed is None else changed

    old = None
    with hooks.running():
        for i in range(len(sigmas) - 1):
            s, s_next = sigmas[i], sigmas[i + 1]
            d = denoise(x, s)
            if kind == "euler":
                x = x + (x - d) / s * (s_next - s)
            elif kind == "euler_a":
                down = s_next * 0.8
                x = x + (x - d) / s * (down - s) + noise[i] * (s_next ** 2 - down ** 2) ** 0.5
            elif kind == "heun":
                x2 = x + (x - d) / s * (s_next - s)
                d2 = denoise(x2, s_next)
                x = x + ((x - d) / s + (x2 - d2) / s_next) / 2 * (s_next - s)
            elif kind == "dpmpp_2m":
                t, t_next = -math.log(s), -math.log(s_next)
                h = t_next - t
                if old is None:
                    denoised_d = d
                else:
                    r = (t - (-math.log(sigmas[i - 1]))) / h
                    denoised_d = (1 + 1 / (2 * r)) * d - (1 / (2 * r)) * old
                x = (s_next / s) * x - math.expm1(-h) * denoised_d
                old = d
    seen.append(x)
    return seen


@pytest.mark.parametrize("fraction_of", ["steps", "calls"])
@pytest.mark.parametrize("kind", ["euler", "euler_a", "heun", "dpmpp_2m"])
@pytest.mark.parametrize("keep, band, soft", [(1.0, 0.25, False), (0.6, 0.25, False), (1.0, 0.0, False),
                                             (1.0, 0.25, True)])
def test_where_the_map_says_follow_the_latent_is_the_bases_on_every_elementwise_sampler(kind, keep, band, soft,
                                                                                       fraction_of):
    model = _MixingModel()
    sigmas = torch.linspace(10, 0.1, 9).tolist()
    g = torch.Generator().manual_seed(2)
    x_T = torch.randn(2, 4, 16, 16, generator=g) * sigmas[0]
    step_noise = torch.randn(8, 2, 4, 16, 16, generator=g)
    regions = [[RerollRegion(box=(0.3, 0.25, 0.6, 0.55))], [RerollRegion(box=(0.1, 0.5, 0.45, 0.9), feather=0.1)]]
    w = torch.stack([region_weight(r[0], 16, 16) for r in regions])[:, None]
    rec = Recorder()
    base = _sample(kind, model, x_T, sigmas, SamplingHooks([rec]), step_noise)
    fresh = torch.randn(2, 4, 16, 16, generator=g) * sigmas[0]
    x_new = torch.sqrt(1 - w * w) * x_T + w * fresh  # the reroll: w > 0 only on the regions
    new_noise = torch.where(w > 0, torch.randn(8, 2, 4, 16, 16, generator=g), step_noise)
    blend = KeepBlend.from_regions(rec.records, regions, (16, 16), keep, band=band, fraction_of=fraction_of, soft=soft)
    placed = []
    kept = _sample(kind, model, x_new, sigmas, SamplingHooks([blend]), new_noise, placed)
    free = _sample(kind, model, x_new, sigmas, SamplingHooks([]), new_noise)
    calls = len(rec.records[0])
    assert len(kept) == calls + 1
    m = blend.masks
    # the kept time by hand: floor(keep x 8 steps), or x the calls (heun: 15); a call's time: its place on the
    # schedule (heun's second call: at the next sigma), or its index
    K = math.floor(keep * (8 if fraction_of == "steps" else calls) + 1e-6)
    if kind == "heun" and fraction_of == "steps":
        assert [c.at for c in placed[:4]] == [0.0, 1.0, 1.0, 2.0]
    step = [i // 2 if kind == "heun" else i for i in range(calls)]  # heun here: two calls in every step
    for i, call in enumerate(placed):  # the x the model sees at call i: the base's wherever the map says follow
        t = step[i] if fraction_of == "steps" else i
        follow = ((m == 0) & (K * blend.release > t) & ((blend.release >= 1) if soft else True)).expand_as(x_T)
        assert follow.any() == (t < K)
        assert torch.equal(kept[i][follow], base[i][follow]), i
        assert torch.equal(kept[i + 1][follow], base[i + 1][follow]), i  # and the x its update gives
    beyond = ((m == 0) & (blend.release >= 1)).expand_as(x_T)  # beyond the band: all the kept time, at keep 1 all
    assert not torch.equal(free[-1][beyond], base[-1][beyond])  # without keep the outside drifts
    if keep == 1.0:
        assert torch.equal(kept[-1][beyond], base[-1][beyond])
    else:
        assert not torch.equal(kept[-1][beyond], base[-1][beyond])  # released at floor(0.6 calls): drifts after
    if band > 0:  # the band moves: released elements are free
        band_cells = ((m == 0) & (blend.release < 1)).expand_as(x_T)
        assert not torch.equal(kept[-1][band_cells], base[-1][band_cells])


def test_a_caches_recorder_stores_complete_records_under_their_keys():
    cache = BaseCache(2**20)
    calls = [torch.randn(2, 4, 8, 8) for _ in range(3)]
    with SamplingHooks([cache.recorder(["a", "b"])]).running() as hooks:
        for i, x in enumerate(calls):
            assert hooks.after_call(Call.plain(i, 3), x) is None
    for key, row in (("a", 0), ("b", 1)):
        assert [torch.equal(t, x[row]) for t, x in zip(cache.get(key).calls, calls)] == [True] * 3
    with pytest.raises(RuntimeError):  # an interrupted generation is never stored
        with SamplingHooks([cache.recorder(["c", "d"])]).running() as hooks:
            hooks.after_call(Call.plain(0, 3), calls[0])
            raise RuntimeError("interrupted")
    assert cache.get("c") is None and len(cache) == 2
