import contextlib

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from lib_initedit.layout import attention
from lib_initedit.layout.attention import find_cross_attention
from lib_initedit.layout.attention_delta import attention_delta
from lib_initedit.layout.guidance import LayoutGuidance, select_guided_layers
from lib_initedit.layout.placement import box_cells
from lib_initedit.sampling_hooks import Call, SamplingHooks
from tests.ldm_like import CrossAttention, UNetModel


@contextlib.contextmanager
def guiding(guide):
    """``guide`` entered as a ``SamplingHooks`` part for the block (steps via ``before_call``)."""
    with SamplingHooks([guide]).running():
        yield guide

BOXES = [[(0.0, 0.0, 0.5, 0.5), (0.5, 0.25, 1.0, 1.0)], [(0.25, 0.25, 0.75, 0.75)]]
COLUMNS = [[[2], [4, 5]], [[3]]]


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return UNetModel(model_channels=32, context_dim=32).eval()


def inputs(b=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 4, 32, 32, generator=g)
    cond = torch.randn(b, 77, 32, generator=g)
    uncond = torch.randn(1, 77, 32, generator=g).expand(b, -1, -1)
    return x, cond, uncond


def cfg_call(unet, x, cond, uncond):
    t = torch.full((2 * x.shape[0],), 981)
    with torch.no_grad():
        return unet(torch.cat([x, x]), t, context=torch.cat([uncond, cond]))


def reference_attention(module, x, context, bias_cols, bias):
    """Full softmax with the bias added to the columns, then to_out: the slow, obvious way."""
    b, n, _ = x.shape
    h = module.heads
    q, k, v = module.to_q(x), module.to_k(context), module.to_v(context)
    q, k, v = (t.reshape(b, t.shape[1], h, -1).transpose(1, 2) for t in (q, k, v))
    sim = q @ k.transpose(-1, -2) * module.scale  # (b, h, n, T)
    full = torch.zeros(n, sim.shape[-1])
    full[:, bias_cols] = bias
    out = (sim + full).softmax(dim=-1) @ v
    return module.to_out(out.transpose(1, 2).reshape(b, n, -1))


def test_strength_zero_and_after_the_fraction_are_bit_identical(unet):
    x, cond, uncond = inputs()
    plain = cfg_call(unet, x, cond, uncond)
    layers = select_guided_layers(unet, "all")
    off = LayoutGuidance(unet, layers, 0.0, 0.3, COLUMNS, BOXES)
    with guiding(off):
        off.before_call(Call.plain(0, 10), cond)
        assert torch.equal(cfg_call(unet, x, cond, uncond), plain)
    on = LayoutGuidance(unet, layers, 4.0, 0.3, COLUMNS, BOXES)
    with guiding(on):
        on.before_call(Call.plain(0, 10), cond)
        guided = cfg_call(unet, x, cond, uncond)
        assert not torch.equal(guided, plain)
        on.before_call(Call.plain(3, 10), cond)  # 3 >= 0.3 * 10: no longer guided
        assert torch.equal(cfg_call(unet, x, cond, uncond), plain)
        on.before_call(Call.plain(2, 10), cond)
        assert torch.equal(cfg_call(unet, x, cond, uncond), guided)
    assert torch.equal(cfg_call(unet, x, cond, uncond), plain)


@pytest.mark.parametrize("fraction_of", ["steps", "calls"])
def test_a_second_order_sampler_is_guided_for_the_same_steps(unet, fraction_of):
    """guidance_steps 0.3 of 10 steps: "steps" guides every call placed before step 3 (Heun: both calls of
    steps 0 and 1 and the first of step 2; its second call evaluates at step 3's level); "calls" (old
    infotexts) the calls before 0.3 x the host's budget (A1111: 20 for Heun), whatever their place."""
    x, cond, uncond = inputs()
    plain = cfg_call(unet, x, cond, uncond)
    g = LayoutGuidance(unet, select_guided_layers(unet, "all"), 4.0, 0.3, COLUMNS, BOXES, fraction_of=fraction_of)
    heun = [Call(i, 20, 10, float((i + 1) // 2)) for i in range(19)]  # places 0, 1, 1, 2, 2, ...
    guided = []
    with guiding(g):
        for call in heun:
            g.before_call(call, cond)
            guided.append(not torch.equal(cfg_call(unet, x, cond, uncond), plain))
    want = [c.at < 3 for c in heun] if fraction_of == "steps" else [c.index < 6 for c in heun]
    assert guided == want and sum(want) == (5 if fraction_of == "steps" else 6)


def test_only_the_conditional_rows_change(unet):
    x, cond, uncond = inputs()
    plain = cfg_call(unet, x, cond, uncond)
    g = LayoutGuidance(unet, select_guided_layers(unet, "all"), 4.0, 1.0, COLUMNS, BOXES)
    with guiding(g):
        g.before_call(Call.plain(0, 10), cond)
        guided = cfg_call(unet, x, cond, uncond)
    assert torch.equal(guided[:2], plain[:2])  # unconditional rows: untouched
    assert not torch.equal(guided[2], plain[2]) and not torch.equal(guided[3], plain[3])
    # an image whose conditioning is not in the batch is not guided
    other = LayoutGuidance(unet, select_guided_layers(unet, "all"), 4.0, 1.0, COLUMNS, BOXES)
    with guiding(other):
        other.before_call(Call.plain(0, 10), [cond[0], torch.randn(77, 32)])
        partly = cfg_call(unet, x, cond, uncond)
    assert torch.equal(partly[3], plain[3]) and torch.equal(partly[:2], plain[:2])
    assert torch.allclose(partly[2], guided[2], atol=1e-6)


def test_guided_output_equals_the_slow_reference():
    torch.manual_seed(3)
    module = CrossAttention(48, 32, heads=4, dim_head=12).eval()
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 64, 48, generator=g)  # an 8x8 layer
    context = torch.randn(3, 77, 32, generator=g)
    boxes = [[(0.0, 0.0, 0.5, 0.5), (0.5, 0.5, 1.0, 1.0)], [], [(0.2, 0.1, 0.9, 0.6)]]
    columns = [[[2], [4, 5]], [], [[7]]]
    guide = LayoutGuidance(module, [module], 3.0, 1.0, columns, boxes, query_chunk=10)
    with torch.no_grad():
        plain = module(x, context=context)
        with guiding(guide):
            guide.before_call(Call.plain(0, 4), [context[0], context[1], context[2]])
            out = module(x, context=context)
        for b in (0, 2):
            cols = sorted({c for cs in columns[b] for c in cs})
            bias = torch.zeros(64, len(cols))
            for k, (cs, box) in enumerate(zip(columns[b], boxes[b])):
                inside = box_cells(box, 8, 8).flatten()
                for c in cs:
                    bias[:, cols.index(c)] += torch.where(inside, 3.0, -3.0)
            ref = reference_attention(module, x[b:b + 1], context[b:b + 1], cols, bias)
            assert torch.allclose(out[b:b + 1], ref, atol=1e-5), (out[b:b + 1] - ref).abs().max()
            assert not torch.allclose(out[b], plain[b], atol=1e-3)
    assert torch.equal(out[1], plain[1])  # no boxes: untouched


def test_guide_output_adds_the_change_to_a_replacement_output():
    """A host whose attention bypasses module.forward (Forge's attn2 replace patches) adds the change to the
    replacement's output: on plain attention it must equal the slow reference, and be a no-op when off."""
    torch.manual_seed(3)
    module = CrossAttention(48, 32, heads=4, dim_head=12).eval()
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 64, 48, generator=g)
    context = torch.randn(2, 77, 32, generator=g)
    boxes, columns = [[(0.0, 0.0, 0.5, 1.0)], [(0.5, 0.0, 1.0, 1.0)]], [[[3]], [[6, 7]]]
    guide = LayoutGuidance(module, [module], 2.5, 0.5, columns, boxes, query_chunk=16)
    with torch.no_grad():
        replaced = module(x, context=context)  # what a replacement computing plain attention returns
        assert guide.guide_output(module, replaced, x, context) is replaced  # not active: untouched
        guide.active = True  # before_call needs an install
        guide._rows.reset([context[0], context[1]])
        out = guide.guide_output(module, replaced, x, context)
        for b, cols in ((0, [3]), (1, [6, 7])):
            inside = box_cells(boxes[b][0], 8, 8).flatten()
            bias = torch.where(inside, 2.5, -2.5)[:, None].expand(64, len(cols))
            ref = reference_attention(module, x[b:b + 1], context[b:b + 1], cols, bias)
            assert torch.allclose(out[b:b + 1], ref, atol=1e-5), (out[b:b + 1] - ref).abs().max()
        other = torch.randn(2, 77, 32, generator=g)  # rows that are nobody's conditioning
        assert guide.guide_output(module, replaced, x, other) is replaced
        unguided = CrossAttention(48, 32, heads=4, dim_head=12).eval()  # a layer this guidance does not guide
        assert guide.guide_output(unguided, replaced, x, context) is replaced
        # the watched call (heatmaps' third column) is recorded through this path too, output untouched
        guide.watch([module])
        guide.active, guide._watching = False, True
        assert guide.guide_output(module, replaced, x, context) is replaced
        with torch.no_grad():
            probs = attention.attention_probabilities(module, x[1:], context[1:], [6, 7])[0]  # (64, 2)
        assert torch.allclose(guide.watched_maps(1), probs.mean(dim=1).reshape(1, 8, 8), atol=1e-6)


def test_watched_maps_are_the_models_own_attention_after_the_guided_steps(unet):
    """The heatmaps' third column: at the first unguided call, the plain attention of each box phrase on
    the watched layers, equal to an independent capture of the same call, and the output unchanged."""
    from lib_initedit.layout.attention import capture_cross_attention, select_layers
    x, cond, uncond = inputs()
    level = select_layers(find_cross_attention(unet), "level")
    g = LayoutGuidance(unet, select_guided_layers(unet, "all"), 4.0, 0.5, COLUMNS, BOXES).watch(level)
    x1 = x + 0.5 * torch.randn_like(x)  # the sampler's state at the watched call
    with guiding(g):
        g.before_call(Call.plain(0, 4), cond)
        cfg_call(unet, x, cond, uncond)
        assert g.watched_maps(0) is None  # guided calls are not recorded
        g.before_call(Call.plain(2, 4), cond)  # first unguided call: ceil(0.5 * 4) = 2
        watched_out = cfg_call(unet, x1, cond, uncond)
        g.before_call(Call.plain(3, 4), cond)
        cfg_call(unet, x, cond, uncond)  # not recorded again
    assert g.watched_index == 2
    assert torch.equal(watched_out, cfg_call(unet, x1, cond, uncond))
    columns = sorted({c for item in COLUMNS for cs in item for c in cs})
    with capture_cross_attention(unet, level, columns, stop_early=False) as record:
        cfg_call(unet, x1, cond, uncond)
    stacked = torch.stack([record.maps[layer.name] for layer in level]).mean(dim=0)  # (2B, h, w, C)
    for b in range(2):
        want = torch.stack([stacked[2 + b][..., [columns.index(c) for c in cs]].mean(dim=-1) for cs in COLUMNS[b]])
        got = g.watched_maps(b)
        assert got is not None and got.shape == want.shape
        assert torch.allclose(got, want, atol=1e-6), (got - want).abs().max()


def test_identical_prompts_are_matched_in_order():
    torch.manual_seed(3)
    module = CrossAttention(48, 32, heads=4, dim_head=12).eval()
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 64, 48, generator=g)
    ctx = torch.randn(1, 77, 32, generator=g).expand(2, -1, -1).contiguous()  # two images, one prompt
    boxes = [[(0.0, 0.0, 0.5, 1.0)], [(0.5, 0.0, 1.0, 1.0)]]
    with torch.no_grad():
        guide = LayoutGuidance(module, [module], 4.0, 1.0, [[[2]], [[2]]], boxes)
        with guiding(guide):
            guide.before_call(Call.plain(0, 1), [ctx[0], ctx[1]])
            both = module(x, context=ctx)
        for b in range(2):
            single = LayoutGuidance(module, [module], 4.0, 1.0, [[[2]]], [boxes[b]])
            with guiding(single):
                single.before_call(Call.plain(0, 1), [ctx[b]])
                alone = module(x[b:b + 1], context=ctx[b:b + 1])
            assert torch.allclose(both[b:b + 1], alone, atol=1e-6)


class IPAdapterLike:
    """A per-instance forward patch like an IP-Adapter's: the text attention plus an image-token attention."""

    def __init__(self, module, tokens=4):
        g = torch.Generator().manual_seed(9)
        inner = module.to_q.out_features
        self.module, self.original = module, module.forward
        self.k_ip = torch.randn(1, tokens, inner, generator=g)
        self.v_ip = torch.randn(1, tokens, inner, generator=g)

    def __call__(self, x, context=None, mask=None):
        out = self.original(x, context=context)
        q = self.module.to_q(x)
        extra = torch.softmax(q @ self.k_ip.transpose(-1, -2) * self.module.scale, dim=-1) @ self.v_ip
        return out + self.module.to_out(extra) * 0.5


def test_a_per_instance_patch_keeps_working_and_is_restored(unet):
    x, cond, uncond = inputs()
    layers = select_guided_layers(unet, "all")
    module = layers[0].module
    plain = cfg_call(unet, x, cond, uncond)
    patch = IPAdapterLike(module)
    module.forward = patch
    try:
        patched = cfg_call(unet, x, cond, uncond)
        assert not torch.equal(patched, plain)
        g = LayoutGuidance(unet, layers, 4.0, 1.0, COLUMNS, BOXES)
        with guiding(g):
            assert vars(module)["forward"] is not patch
            g.before_call(Call.plain(0, 10), cond)
            both = cfg_call(unet, x, cond, uncond)
        assert vars(module)["forward"] is patch  # exactly the same object back
        # the patch still contributes under guidance: guided-with-patch differs from guided-without
        del module.forward
        g2 = LayoutGuidance(unet, layers, 4.0, 1.0, COLUMNS, BOXES)
        with guiding(g2):
            g2.before_call(Call.plain(0, 10), cond)
            guided_only = cfg_call(unet, x, cond, uncond)
        assert not torch.allclose(both, guided_only, atol=1e-4)
        assert torch.allclose(both[:2], patched[:2])  # unconditional rows: the patch's output, untouched
        # and the guidance still applies on top of the patch (conditional rows differ from the patch alone)
        assert not torch.allclose(both[2:], patched[2:], atol=1e-4)
    finally:
        vars(module).pop("forward", None)
    assert "forward" not in vars(module)


def test_guidance_on_top_of_a_patch_equals_patch_plus_delta():
    """The per-layer change under a patch is the same delta as without it (the patch's own term kept)."""
    torch.manual_seed(3)
    module = CrossAttention(48, 32, heads=4, dim_head=12).eval()
    g = torch.Generator().manual_seed(4)
    x = torch.randn(1, 64, 48, generator=g)
    context = torch.randn(1, 77, 32, generator=g)
    boxes, columns = [[(0.0, 0.0, 0.5, 0.5)]], [[[2, 3]]]
    with torch.no_grad():
        plain = module(x, context=context)
        guide = LayoutGuidance(module, [module], 3.0, 1.0, columns, boxes)
        with guiding(guide):
            guide.before_call(Call.plain(0, 1), [context[0]])
            guided = module(x, context=context)
        patch = IPAdapterLike(module)
        module.forward = patch
        patched = module(x, context=context)
        guide = LayoutGuidance(module, [module], 3.0, 1.0, columns, boxes)
        with guiding(guide):
            guide.before_call(Call.plain(0, 1), [context[0]])
            both = module(x, context=context)
        assert vars(module)["forward"] is patch
        del module.forward
    assert torch.allclose(both - patched, guided - plain, atol=1e-5)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_forwards_restored_after_an_error(unet, error):
    x, cond, uncond = inputs()
    layers = select_guided_layers(unet, "all")
    patch = IPAdapterLike(layers[1].module)
    layers[1].module.forward = patch
    class_forwards = {type(layer.module): type(layer.module).forward for layer in layers}
    try:
        with pytest.raises(error):
            with guiding(LayoutGuidance(unet, layers, 4.0, 1.0, COLUMNS, BOXES)) as g:
                g.before_call(Call.plain(0, 10), cond)
                cfg_call(unet, x, cond, uncond)
                raise error("stop")
        assert vars(layers[1].module)["forward"] is patch
        assert all("forward" not in vars(layer.module) for i, layer in enumerate(layers) if i != 1)
        assert all(cls.forward is f for cls, f in class_forwards.items())
        # an error raised inside a guided forward (e.g. an interrupt from a hook) restores too
        def boom(*a, **k):
            raise error("inside")
        handle = layers[2].module.to_v.register_forward_hook(boom)
        try:
            g = LayoutGuidance(unet, layers, 4.0, 1.0, COLUMNS, BOXES)
            with pytest.raises(error):
                with guiding(g):
                    g.before_call(Call.plain(0, 10), cond)
                    cfg_call(unet, x, cond, uncond)
        finally:
            handle.remove()
        assert vars(layers[1].module)["forward"] is patch
        assert all("forward" not in vars(layer.module) for i, layer in enumerate(layers) if i != 1)
        assert not layers[2].module.to_q._forward_hooks and not layers[2].module.to_k._forward_hooks
    finally:
        vars(layers[1].module).pop("forward", None)


def test_sampling_hooks_protocol_uses_rows(unet):
    x, cond, uncond = inputs()
    layers = select_guided_layers(unet, "all")
    rows_all = torch.cat([cond[1:], torch.randn(1, 77, 32), cond[:1]])  # image 0 is row 2, image 1 row 0
    g = LayoutGuidance(unet, layers, 4.0, 0.5, COLUMNS, BOXES, rows=[2, 0])
    g.enter()
    try:
        g.before_call(Call.plain(0, 4), rows_all)
        guided = cfg_call(unet, x, cond, uncond)
        g.before_call(Call.plain(2, 4), rows_all)
        late = cfg_call(unet, x, cond, uncond)
    finally:
        g.leave(False)
    ref = LayoutGuidance(unet, layers, 4.0, 0.5, COLUMNS, BOXES)
    with guiding(ref):
        ref.before_call(Call.plain(0, 4), cond)
        expected = cfg_call(unet, x, cond, uncond)
    assert torch.equal(guided, expected)
    assert torch.equal(late, cfg_call(unet, x, cond, uncond))
    assert all("forward" not in vars(layer.module) for layer in layers)


class MaxTensor(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("chunk", [16, 1024])
def test_no_full_size_probabilities(chunk):
    heads, n, t = 4, 256, 77
    g = torch.Generator().manual_seed(0)
    q = torch.randn(n, heads * 8, generator=g)
    k = torch.randn(t, heads * 8, generator=g)
    v = torch.randn(t, heads * 8, generator=g)
    cols = torch.tensor([3, 5])
    bias = torch.randn(n, 2, generator=g) * 4
    with torch.no_grad(), MaxTensor() as spy:
        delta = attention_delta(q, k, v, heads, 8 ** -0.5, cols, bias, chunk=chunk)
    full = heads * n * t
    if chunk < n:
        assert spy.largest <= max(heads * chunk * t, q.numel()) < full  # chunks, or the inputs themselves
    else:
        assert spy.largest == full  # the spy sees a full-size tensor when there is one
    sim = (q.reshape(n, heads, 8).transpose(0, 1) @ k.reshape(t, heads, 8).transpose(0, 1).transpose(-1, -2)) * 8 ** -0.5
    vb = v.reshape(t, heads, 8).transpose(0, 1)
    bb = torch.zeros(n, t)
    bb[:, cols] = bias
    ref = ((sim + bb).softmax(-1) @ vb - sim.softmax(-1) @ vb).transpose(0, 1).reshape(n, -1)
    assert torch.allclose(delta, ref, atol=1e-5)


def test_from_spec_and_layer_choices(unet):
    from lib_initedit.spec import InitEditSpec

    found = find_cross_attention(unet)
    assert len(select_guided_layers(unet, "all")) == len(found)
    assert all(layer.path == "input" for layer in select_guided_layers(unet, "down"))
    assert {layer.name for layer in select_guided_layers(unet, "level")} < {layer.name for layer in found}
    g = LayoutGuidance.from_spec(unet, InitEditSpec(guidance=2.0, guidance_steps=0.5), COLUMNS, BOXES)
    assert g.strength == 2.0 and g.fraction == 0.5 and g.enabled
    assert not LayoutGuidance.from_spec(unet, InitEditSpec(guidance=0.0), COLUMNS, BOXES).enabled
    assert g.guided_at(4, 10) and not g.guided_at(5, 10)
    # guidance_core: a large box (the second of image 0, 0.375 of the image) pulls only in its centre
    bias = LayoutGuidance.from_spec(unet, InitEditSpec(guidance=2.0, guidance_core=0.5), COLUMNS, BOXES)._bias(0, 8, 8, "cpu")[0]
    whole = LayoutGuidance.from_spec(unet, InitEditSpec(guidance=2.0, guidance_core=1.0), COLUMNS, BOXES)._bias(0, 8, 8, "cpu")[0]
    large = bias[:, 1].reshape(8, 8)  # column 4: box (0.5, 0.25, 1, 1), cells rows 2-7, cols 4-7
    assert large[4, 5] > 0 and large[2, 4] == 0 and large[0, 0] < 0  # centre pulls, the rim is neutral
    assert torch.equal(whole[:, 1].reshape(8, 8)[2:, 4:] > 0, torch.ones(6, 4, dtype=torch.bool))
    small = [[(0.0, 0.0, 0.3, 0.3)]]  # 0.09 of the image: the whole box pulls whatever guidance_core says
    cored, plain = (LayoutGuidance.from_spec(unet, InitEditSpec(guidance=2.0, guidance_core=c), [[[2]]], small)
                    ._bias(0, 8, 8, "cpu")[0] for c in (0.5, 1.0))
    assert torch.equal(cored, plain) and int((plain > 0).sum()) == 4


def test_a_marker_token_prepended_to_the_cond_rows_still_matches():
    """sd-webui-controlnet prepends a cond/uncond marker token to the conditioning the CFG denoiser holds and
    strips it inside its UNet forward: the attention layers see the cond rows without their first token."""
    import torch

    from lib_initedit.layout.guidance import LayoutGuidance, select_guided_layers
    from tests.ldm_like import tiny_unet

    unet = tiny_unet()
    g = torch.Generator().manual_seed(0)
    x, ctx = torch.randn(1, 4, 16, 16, generator=g), torch.randn(1, 77, 32, generator=g)
    marked = torch.cat([torch.full((1, 1, 32), 1024.0), ctx], dim=1)
    t = torch.full((1,), 981)
    with torch.no_grad():
        plain = unet(x, t, context=ctx)
    guide = LayoutGuidance(unet, select_guided_layers(unet, "all"), 6.0, 1.0, [[[2, 3]]], [[(0, 0, 0.5, 1)]])
    with guiding(guide):
        guide.before_call(Call.plain(0, 1), marked)
        with torch.no_grad():
            guided = unet(x, t, context=ctx)
    assert guide.calls_guided > 0 and not torch.equal(guided, plain)


# ---------------------------------------------------------------------------- "share" units
def share_reference(module, x, context, columns, boxes, tau, weights=None):
    """Per head and query: each box phrase's share P -> max(P, tau) inside its box, (1 - tau) P outside, by
    solving for the bias by hand (full softmax), then to_out. Also returns the phrase shares before/after."""
    b, n, _ = x.shape
    h = module.heads
    side = int(n ** 0.5)
    q, k, v = module.to_q(x), module.to_k(context), module.to_v(context)
    q, k, v = (t.reshape(b, t.shape[1], h, -1).transpose(1, 2) for t in (q, k, v))
    sim = q @ k.transpose(-1, -2) * module.scale
    p = sim.softmax(dim=-1)
    bias = torch.zeros_like(sim)
    for j, (cols, box) in enumerate(zip(columns, boxes)):
        t = 1 - (1 - tau) ** (weights[j] if weights else 1.0)
        share = p[..., cols].sum(-1).double()
        inside = box_cells(box, side, side).flatten()
        target = torch.where(inside, torch.clamp(share, min=t), share * (1 - tau) ** (weights[j] if weights else 1.0))
        for c in cols:
            bias[..., c] += (torch.logit(target) - torch.logit(share)).float()
    new = (sim + bias).softmax(dim=-1)
    out = module.to_out((new @ v).transpose(1, 2).reshape(b, n, -1))
    return out, p, new


@pytest.mark.parametrize("sink", [0.0, 60.0])
def test_share_units_reach_the_target_share_whatever_the_score_scale(sink):
    """In "share" units the phrase gets at least tau of each query's attention in its box and at most (1 - tau)
    of its own share outside, on near-uniform attention and with a start token that takes most of it (SD)."""
    torch.manual_seed(3)
    module = CrossAttention(48, 32, heads=4, dim_head=12).eval()
    g = torch.Generator().manual_seed(4)
    x = torch.randn(1, 64, 48, generator=g)
    context = torch.randn(1, 77, 32, generator=g)
    if sink:  # every query shares a direction that a large start-token key points along (as in SD)
        u = torch.randn(48, generator=g)
        x = x + 8 * u / u.norm()
        with torch.no_grad():
            qu = module.to_q.weight @ (u / u.norm())
            context[0, 0] = sink * torch.linalg.pinv(module.to_k.weight) @ qu
    boxes, columns = [(0.0, 0.0, 0.5, 0.5), (0.5, 0.25, 1.0, 1.0)], [[2, 3], [5]]
    guide = LayoutGuidance(module, [module], 80.0, 1.0, [columns], [boxes], units="share", query_chunk=10)
    with torch.no_grad():
        ref, before, after = share_reference(module, x, context, columns, boxes, 0.8)
        with guiding(guide):
            guide.before_call(Call.plain(0, 4), [context[0]])
            out = module(x, context=context)
    assert torch.allclose(out, ref, atol=1e-5), (out - ref).abs().max()
    if sink:
        assert before[..., 0].mean() > 0.5  # the start token took most of the attention
    for cols, box in zip(columns, boxes):
        inside = box_cells(box, 8, 8).flatten()
        was, now = before[..., cols].sum(-1)[0], after[..., cols].sum(-1)[0]  # (h, n)
        # the other box's bias moves the shares a little: within 2 % of the target
        assert (now[:, inside] >= 0.8 * 0.98).all() and (now[:, ~inside] <= 0.2 * was[:, ~inside] * 1.1 + 1e-7).all()


def test_share_units_count_a_small_box_more():
    torch.manual_seed(3)
    module = CrossAttention(48, 32, heads=4, dim_head=12).eval()
    g = torch.Generator().manual_seed(6)
    x = torch.randn(1, 64, 48, generator=g)
    context = torch.randn(1, 77, 32, generator=g)
    boxes, columns = [(0.0, 0.0, 0.25, 0.25)], [[4]]  # 6.25 % of the image: counts 0.16 / 0.0625 = 2.56 times
    guide = LayoutGuidance(module, [module], 70.0, 1.0, [columns], [boxes], units="share", size_power=1.0)
    with torch.no_grad():
        ref, _, _ = share_reference(module, x, context, columns, boxes, 0.7, weights=[2.56])
        with guiding(guide):
            guide.before_call(Call.plain(0, 4), [context[0]])
            out = module(x, context=context)
    assert torch.allclose(out, ref, atol=1e-5), (out - ref).abs().max()


def test_share_units_stay_finite_in_half_precision():
    """Scores far outside fp16's comfortable range and shares that underflow: the change stays finite."""
    g = torch.Generator().manual_seed(7)
    q = (torch.randn(2, 64, 32, generator=g) * 30).half()
    k = (torch.randn(2, 77, 32, generator=g) * 30).half()
    v = torch.randn(2, 77, 32, generator=g).half()
    cols = torch.tensor([[2, 3], [5, 0]])
    members = torch.tensor([[[1.0, 1.0]], [[1.0, 0.0]]])
    inside = box_cells((0.0, 0.0, 0.5, 0.5), 8, 8).flatten().float()
    floor = (inside * 0.99)[None, :, None].expand(2, 64, 1)
    keep = torch.where(inside > 0, 1.0, 0.01)[None, :, None].expand(2, 64, 1)
    delta = attention_delta(q, k, v, 4, 8 ** -0.5, cols, None, 16, share=(members, floor, keep))
    assert torch.isfinite(delta).all() and torch.isfinite(delta.half()).all()
    assert delta.abs().max() <= 2 * v.float().abs().max()  # a convex combination moved: bounded by the values


def test_an_infotext_without_units_means_the_old_absolute_bias(unet):
    """Old infotexts reproduce: a layout spec without guidance_units guides by +-guidance logits (size-scaled)."""
    from lib_initedit.spec import parse_infotext
    old = {"layout": [{"phrase": "cat", "box": [0, 0, 0.5, 0.5]}], "guidance": 8.0, "guidance_steps": 0.5}
    spec = parse_infotext(old)
    assert spec.guidance_units == "logits"
    from_spec = LayoutGuidance.from_spec(unet, spec, COLUMNS, BOXES)
    by_hand = LayoutGuidance(unet, select_guided_layers(unet, "all"), 8.0, 0.5, COLUMNS, BOXES, units="logits",
                             size_power=1.0, large_core=spec.guidance_core)
    x, cond, uncond = inputs()
    outs = []
    for guide in (from_spec, by_hand):
        with guiding(guide):
            guide.before_call(Call.plain(0, 10), [cond[0], cond[1]])
            outs.append(cfg_call(unet, x, cond, uncond))
    assert torch.equal(outs[0], outs[1])
    new = LayoutGuidance.from_spec(unet, parse_infotext({**old, "guidance": 80.0, "guidance_units": "share"}),
                                   COLUMNS, BOXES)
    assert new.units == "share" and new.strength == 80.0


def test_coarse_guides_the_probe_resolution_and_coarser_and_old_infotexts_guide_every_layer():
    """"coarse" (the default): on an SD1 layout the attn2 layers at the 16x16 level (input 7, 8; output 3-5) and
    the middle one; "all" (infotexts without guidance_layers): every attn2; on the toy both are its six layers."""
    from lib_initedit.spec import InitEditSpec, parse_infotext
    from lib_initedit.toy.model import load
    from tests.ldm_like import UNetModel

    sd1 = UNetModel(model_channels=32, context_dim=32)
    names = [layer.name.split(".transformer_blocks")[0] for layer in select_guided_layers(sd1, "coarse")]
    assert names == ["input_blocks.7.1", "input_blocks.8.1", "middle_block.1", "output_blocks.3.1",
                     "output_blocks.4.1", "output_blocks.5.1"]
    assert len(select_guided_layers(sd1, "all")) == 16
    toy = load().unet
    assert [x.name for x in select_guided_layers(toy, "coarse")] == [x.name for x in select_guided_layers(toy, "all")]
    box = [{"phrase": "cat", "box": [0, 0, 0.5, 1]}]
    assert InitEditSpec().guidance_layers == "coarse"
    assert parse_infotext({"layout": box, "guidance": 8.0}).guidance_layers == "all"
    guide = LayoutGuidance.from_spec(sd1, parse_infotext({"layout": box, "guidance": 8.0}), [[[2]]], [[(0, 0, 0.5, 1)]])
    assert len(guide.modules) == 16
