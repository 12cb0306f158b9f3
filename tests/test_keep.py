"""Keep the rest (lib_initedit.reroll.keep): exact identities of the keep step, the recorder and the bounded cache."""
import random

import pytest
import torch

from lib_initedit.reroll.keep import (BaseCache, BaseRecord, KeepBlend, Recorder, bytes_per_call, keep_mask,
                               kept_calls)
from lib_initedit.reroll.noise import region_weight
from lib_initedit.sampling_hooks import SamplingHooks
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
        assert blend.after_call(i, 10, x) is None


def test_outside_is_the_base_inside_is_untouched_and_later_calls_are_free():
    b0, b1 = record(10, seed=1), record(10, seed=2)
    masks = torch.zeros(2, 8, 8)
    masks[:, 2:5, 3:7] = 1.0
    blend = KeepBlend([b0, b1], masks, 0.5)
    assert blend.calls == 5
    for i in range(10):
        x = torch.randn(2, 4, 8, 8)
        out = blend.after_call(i, 10, x)
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
    out = KeepBlend([base], masks, 1.0).after_call(2, 4, x)
    assert out.dtype == torch.float16
    want = (0.25 * x.float() + 0.75 * base.calls[2][None]).half()
    assert torch.equal(out, want)


def test_one_record_serves_a_whole_batch():
    base = record(3)
    masks = torch.zeros(4, 8, 8)
    masks[:, :4] = 1
    out = KeepBlend([base] * 4, masks, 1.0).after_call(1, 3, torch.randn(4, 4, 8, 8))
    for b in range(4):
        assert torch.equal(out[b, :, 4:], base.calls[1][:, 4:])


def test_calls_past_a_short_record_are_left_alone():
    blend = KeepBlend([record(4)], torch.zeros(1, 8, 8), 1.0)
    assert blend.calls == 4 and blend.after_call(4, 4, torch.zeros(1, 4, 8, 8)) is None
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
        assert rec.after_call(i, 3, x) is None
    xs[0].zero_()  # the host reusing its tensor does not touch the record
    rec.leave(True)
    assert len(got) == 1 and len(got[0]) == 2
    assert all(r.complete and len(r) == 3 for r in got[0])
    assert not torch.equal(got[0][0].calls[0], xs[0][0])
    assert torch.equal(got[0][1].calls[2], xs[2][1])
    assert got[0][0].calls[0].device.type == "cpu"
    assert got[0][0].nbytes == 3 * bytes_per_call((4, 8, 8))

    rec.enter()
    rec.after_call(0, 3, xs[0])
    rec.leave(False)  # interrupted
    assert len(got) == 1 and not rec.records[0].complete

    rec.enter()
    rec.after_call(0, 3, xs[0])
    rec.after_call(2, 3, xs[2])  # a call went missing: the record is not trusted
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
    out = hooks.after_call(0, 2, x)
    assert torch.equal(out[0], base.calls[0])  # mask 0: all outside
    assert torch.equal(rec.records[0].calls[0], base.calls[0])  # the recorder saw what the sampler steps with
    assert SamplingHooks([KeepBlend([base], masks, 0.0), Recorder()]).after_call(0, 2, x) is None


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
    changed = hooks.after_call(i, len(sigmas) - 1, d_)
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
