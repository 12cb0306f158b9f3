import pytest
import torch

from lib_initedit.layout.attention import (StopProbe, attention_probabilities, capture_cross_attention, find_cross_attention,
                                    infer_hw, select_layers)
from tests.ldm_like import hook_count, tiny_unet


@pytest.fixture(scope="module")
def unet():
    return tiny_unet()


def inputs(batch=2, size=32, tokens=77):
    g = torch.Generator().manual_seed(1)
    return torch.randn(batch, 4, size, size, generator=g), torch.full((batch,), 981), torch.randn(batch, tokens, 32, generator=g)


def test_layers_are_found_with_levels(unet):
    layers = find_cross_attention(unet)
    names = [l.name for l in layers]
    assert len(layers) == 16
    assert names[0] == "input_blocks.1.1.transformer_blocks.0.attn2"
    levels = {l.name: l.level for l in layers}
    assert levels["input_blocks.8.1.transformer_blocks.0.attn2"] == 2
    assert levels["middle_block.1.transformer_blocks.0.attn2"] == 3
    assert levels["output_blocks.3.1.transformer_blocks.0.attn2"] == 2
    assert levels["output_blocks.11.1.transformer_blocks.0.attn2"] == 0
    assert [l.name for l in select_layers(layers, "paper")] == ["input_blocks.8.1.transformer_blocks.0.attn2"]
    assert [l.name for l in select_layers(layers, "level")] == ["input_blocks.7.1.transformer_blocks.0.attn2",
                                                                 "input_blocks.8.1.transformer_blocks.0.attn2"]


def reference_maps(module, x, context, columns):
    """The slow, obvious way: per head, full softmax, then the columns, then the head mean."""
    q, k = module.to_q(x), module.to_k(context)
    heads = module.heads
    d = q.shape[-1] // heads
    out = []
    for h in range(heads):
        qh, kh = q[..., h * d:(h + 1) * d], k[..., h * d:(h + 1) * d]
        probs = torch.softmax(qh @ kh.transpose(1, 2) * module.scale, dim=-1)
        out.append(probs[..., columns])
    return torch.stack(out).mean(0)


def test_captured_maps_equal_the_slow_reference(unet):
    x, t, ctx = inputs()
    layers = find_cross_attention(unet)
    wanted = [l for l in layers if l.path == "input"]
    columns = [2, 5, 6]
    seen = {}

    def spy(name):
        def hook(module, args, kwargs):
            seen[name] = (args[0].detach().clone(), kwargs["context"].detach().clone())
        return hook

    handles = [l.module.register_forward_pre_hook(spy(l.name), with_kwargs=True) for l in wanted]
    try:
        with capture_cross_attention(unet, wanted, columns, stop_early=False) as rec:
            unet(x, t, context=ctx)
    finally:
        for h in handles:
            h.remove()
    assert set(rec.maps) == {l.name for l in wanted}
    for layer in wanted:
        hidden, context = seen[layer.name]
        ref = reference_maps(layer.module, hidden, context, columns)
        side = {0: 32, 1: 16, 2: 8}[layer.level]
        assert rec.maps[layer.name].shape == (2, side, side, 3)
        assert torch.allclose(rec.maps[layer.name].reshape(2, -1, 3), ref, atol=1e-6)


def test_chunked_queries_match_unchunked(unet):
    layer = find_cross_attention(unet)[0]
    x, ctx = torch.randn(1, 1024, 32), torch.randn(1, 77, 32)
    full = attention_probabilities(layer.module, x, ctx, [1, 2, 3], chunk=10**6)
    chunked = attention_probabilities(layer.module, x, ctx, [1, 2, 3], chunk=100)
    assert torch.allclose(full, chunked, atol=1e-7)


def test_hooks_removed_after_success_and_forward_unchanged(unet):
    before = hook_count(unet)
    x, t, ctx = inputs()
    plain = unet(x, t, context=ctx)
    layers = select_layers(find_cross_attention(unet), "paper")
    with capture_cross_attention(unet, layers, [1], stop_early=False):
        hooked = unet(x, t, context=ctx)
    assert hook_count(unet) == before
    assert torch.equal(plain, hooked)  # pre-hooks return None: the real forward is untouched
    assert torch.equal(unet(x, t, context=ctx), plain)
    for m in unet.modules():
        assert "forward" not in m.__dict__


def test_hooks_removed_after_an_exception_inside_the_unet(unet):
    before = hook_count(unet)
    layers = select_layers(find_cross_attention(unet), "level")
    boom = unet.output_blocks[0].register_forward_pre_hook(lambda m, a: (_ for _ in ()).throw(RuntimeError("boom")))
    try:
        x, t, ctx = inputs()
        with pytest.raises(RuntimeError, match="boom"):
            with capture_cross_attention(unet, layers, [1], stop_early=False):
                unet(x, t, context=ctx)
    finally:
        boom.remove()
    assert hook_count(unet) == before


def test_early_stop_skips_the_rest_and_is_swallowed(unet):
    before = hook_count(unet)
    calls = []
    marker = unet.middle_block.register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        layers = select_layers(find_cross_attention(unet), "paper")
        x, t, ctx = inputs()
        with capture_cross_attention(unet, layers, [1, 2]) as rec:
            unet(x, t, context=ctx)
            pytest.fail("the forward should have been stopped")
    finally:
        marker.remove()
    assert rec.stopped_early and not calls
    assert rec.maps["input_blocks.8.1.transformer_blocks.0.attn2"].shape == (2, 8, 8, 2)
    assert hook_count(unet) == before


def test_an_existing_instance_forward_patch_survives(unet):
    layer = find_cross_attention(unet)[-1].module
    original = layer.forward
    calls = []

    def patched(x, context=None, mask=None):
        calls.append(1)
        return original(x, context=context, mask=mask)

    layer.forward = patched  # as IP-Adapter does
    try:
        x, t, ctx = inputs()
        with capture_cross_attention(unet, find_cross_attention(unet), [1], stop_early=False):
            unet(x, t, context=ctx)
        assert layer.__dict__["forward"] is patched and calls
    finally:
        del layer.forward


def test_infer_hw_from_ceil_halving():
    assert infer_hw(19 * 17, (75, 66)) == (19, 17)
    assert infer_hw(256, None) == (16, 16)
    with pytest.raises(ValueError):
        infer_hw(7, (64, 64))


def test_column_beyond_context_is_a_clear_error(unet):
    layer = find_cross_attention(unet)[0]
    with pytest.raises(IndexError, match="beyond the conditioning length 77"):
        attention_probabilities(layer.module, torch.randn(1, 16, 32), torch.randn(1, 77, 32), [80])


def test_stop_probe_passes_other_code_s_error_handlers():
    # an abort, not an error: `except Exception` cleanups of wrappers (ControlNet's) must not fire for it
    assert issubclass(StopProbe, BaseException) and not issubclass(StopProbe, Exception)


def test_maps_use_the_q_and_k_the_forward_itself_projected(unet):
    """A forward that changes the context before to_k (as A1111's hypernetworks do) is honoured."""
    layer = select_layers(find_cross_attention(unet), "paper")[0]
    module = layer.module
    original = module.forward

    def hyper_forward(x, context=None, mask=None):
        return original(x, context=context * 2.0, mask=mask)  # the projection sees a changed context

    seen = {}
    spy = module.register_forward_pre_hook(lambda m, a, kw: seen.update(x=a[0], ctx=kw["context"]), with_kwargs=True)
    module.forward = hyper_forward
    try:
        x, t, ctx = inputs()
        with capture_cross_attention(unet, [layer], [2, 5], stop_early=False) as rec:
            unet(x, t, context=ctx)
    finally:
        del module.forward
        spy.remove()
    expected = reference_maps(module, seen["x"], seen["ctx"] * 2.0, [2, 5])
    assert torch.allclose(rec.maps[layer.name].reshape(2, -1, 2), expected, atol=1e-6)


def test_capture_object_installs_once_removes_everything_and_result_is_plain(unet):
    from lib_initedit.layout.attention import AttentionCapture, CaptureResult

    x, t, ctx = inputs(batch=1)
    before = hook_count(unet)
    layers = select_layers(find_cross_attention(unet), "level")
    capture = AttentionCapture(unet, layers, [1, 3], stop_early=False)
    capture.install()
    after_one = hook_count(unet)
    capture.install()  # idempotent
    assert hook_count(unet) == after_one > before
    with torch.no_grad():
        unet(x, t, context=ctx)
    capture.remove()
    capture.remove()
    assert hook_count(unet) == before
    assert isinstance(capture.result, CaptureResult) and set(capture.result.maps) == {l.name for l in layers}
    ref = reference_maps(layers[0].module, *_attn2_inputs(unet, layers[0].module, x, t, ctx), [1, 3])
    assert torch.allclose(capture.result.maps[layers[0].name].flatten(1, 2), ref, atol=1e-5)


def _attn2_inputs(unet, module, x, t, ctx):
    seen = {}
    handle = module.register_forward_pre_hook(lambda m, a, k: seen.update(x=a[0], c=k.get("context", a[1] if len(a) > 1 else None)),
                                              with_kwargs=True)
    try:
        with torch.no_grad():
            unet(x, t, context=ctx)
    finally:
        handle.remove()
    return seen["x"], seen["c"]


def test_observe_serves_a_host_without_attn2_hooks_and_modules_without_scale(unet):
    """A second host (e.g. Forge's patch API) hands q / k to ``observe``; Forge's attn2 has no ``scale``."""
    from lib_initedit.layout.attention import AttentionCapture, attention_scale

    layer = select_layers(find_cross_attention(unet), "paper")[0]
    module = layer.module
    x, t, ctx = inputs(batch=1)
    hx, hc = _attn2_inputs(unet, module, x, t, ctx)
    capture = AttentionCapture(unet, [layer], [2], stop_early=True)
    capture.result.latent_hw = (32, 32)
    with pytest.raises(StopProbe):
        capture.observe(layer, module.to_q(hx), module.to_k(hc), module.heads, attention_scale(module))
    assert torch.allclose(capture.result.maps[layer.name].flatten(1, 2), reference_maps(module, hx, hc, [2]), atol=1e-5)

    class NoScale(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.heads, self.dim_head = 4, 16
            self.to_q = torch.nn.Linear(8, 64)

    assert attention_scale(NoScale()) == pytest.approx(16 ** -0.5)
    assert attention_scale(module) == module.scale
