"""What sd-webui-controlnet (v1.1.455) does to the UNet, reproduced with fakes, against InitEdit's probe.

No WebUI needed. The patterns (read from CN's source, re-written here):
- IP-Adapter (scripts/ipadapter/plugable_ipadapter.py, ``hack_blk`` / ``clear_all_ip_adapter``): every
  ``attn2`` gets an instance attribute ``forward`` (a bound replacement); the ``forward`` it replaced is kept in
  a module-global dict and assigned back on clear.
- ``UnetHook.hook`` (scripts/hook.py): the UNet instance's ``forward`` becomes ``forward_webui``, which wraps a
  re-implemented forward in ``try/except Exception: move models to CPU; raise``; ControlNet residuals are
  added to the middle block's output and the decoder's skip connections only.
- reference-only: inside that same forward, the UNet first runs on the noised reference latent (filling
  attention banks), then on the real input.
The end-to-end counterparts are in tests/webui/test_controlnet.py; findings in docs/controlnet.md.
"""
from __future__ import annotations


import pytest
import torch

from lib_initedit.layout import attention
from lib_initedit.layout.probe import probe_maps, run_layout
from tests.ldm_like import CrossAttention

PHRASES = [[[3, 4]], [[5]]]
BOXES = [[(0.0, 0.0, 0.5, 1.0)], [(0.5, 0.0, 1.0, 1.0)]]


@pytest.fixture()
def setup(tiny_unet):
    unet = tiny_unet
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(2, 4, 16, 16, generator=g)
    ctx = torch.randn(2, 77, 32, generator=g)
    t = torch.full((2,), 981)
    return unet, noise, ctx, t


def paper_layers(unet):
    return attention.select_layers(attention.find_cross_attention(unet), "paper")


# ----------------------------------------------------------------------------- IP-Adapter
class FakeIPAdapter:
    """CN 1.1.455's IP-Adapter attn2 hack: per-instance ``forward``, originals in a dict, assigned back."""

    def __init__(self):
        self.all_hacks = {}
        self.calls = 0

    def hack(self, unet):
        adapter = self

        def attn_forward_hacked(self, x, context=None, **kwargs):
            adapter.calls += 1
            out = adapter.all_hacks[self](x, context=context, **kwargs)
            return out + 0.01 * out.mean(dim=1, keepdim=True)  # "plus the image prompt's term"

        for layer in attention.find_cross_attention(unet):
            m = layer.module
            if m not in self.all_hacks:
                self.all_hacks[m] = m.forward
                m.forward = attn_forward_hacked.__get__(m, type(m))

    def clear(self):
        for m, original in self.all_hacks.items():
            m.forward = original
        self.all_hacks = {}


def test_ip_adapter_instance_forwards_survive_a_layout_run(setup, hook_count):
    unet, noise, ctx, t = setup
    ip = FakeIPAdapter()
    ip.hack(unet)
    installed = {m: m.__dict__["forward"] for m in ip.all_hacks}
    hooks = hook_count(unet)
    result = run_layout(unet, lambda x: unet(x, t, context=ctx), noise, PHRASES, BOXES, rounds=2, measure_after=True)
    assert result.probes == 3
    assert ip.calls > 0, "the probe did not run the patched attention forwards"
    for m, fwd in installed.items():
        assert m.__dict__.get("forward") is fwd, "InitEdit replaced or deleted a forward it did not install"
    assert CrossAttention.forward is CrossAttention.__dict__["forward"]
    assert hook_count(unet) == hooks
    # and the patched UNet still runs as patched after the probe
    calls = ip.calls
    unet(noise, t, context=ctx)
    assert ip.calls == calls + len(installed)


def test_ip_adapter_clear_after_a_layout_run_restores_the_plain_unet(setup, hook_count):
    unet, noise, ctx, t = setup
    with torch.no_grad():
        before = unet(noise, t, context=ctx)
    ip = FakeIPAdapter()
    ip.hack(unet)
    run_layout(unet, lambda x: unet(x, t, context=ctx), noise, PHRASES, BOXES)
    ip.clear()
    with torch.no_grad():
        after = unet(noise, t, context=ctx)
    assert torch.equal(before, after)
    assert ip.calls > 0
    assert hook_count(unet) == 0


def test_ip_adapter_installed_between_probes_is_kept(setup, hook_count):
    """A patch that arrives while InitEdit's hooks are in place (another extension's pre-hook or forward) stays."""
    unet, noise, ctx, t = setup
    ip = FakeIPAdapter()
    layers = paper_layers(unet)

    def call(x):
        ip.hack(unet)  # first probe call installs it, as a lazily hooking extension would
        return unet(x, t, context=ctx)

    probe_maps(unet, call, noise, layers, PHRASES)
    assert all(m.__dict__.get("forward") is not None for m in ip.all_hacks)
    ip.clear()
    assert hook_count(unet) == 0


# ----------------------------------------------------------------------------- ControlNet's UNet forward
class FakeControlNetHook:
    """The UNet instance's ``forward`` replaced as CN's ``UnetHook.hook`` does, with residuals from a fake
    control model (one per skip connection + middle), an optional reference-only pre-pass, and CN's
    ``except Exception: move control models to CPU; raise`` around it."""

    def __init__(self, unet, residual_scale=0.5, reference_latent=None):
        self.unet = unet
        self.original_forward = unet.forward
        self.cleanups = 0
        self.forward_calls = 0
        self.scale = residual_scale
        self.reference_latent = reference_latent
        hook = self

        def forward_webui(self, x, timesteps=None, context=None, **kwargs):
            try:
                return hook.forward(self, x, timesteps, context)
            except Exception:
                hook.cleanups += 1
                raise

        unet._original_forward = unet.forward
        unet.forward = forward_webui.__get__(unet, type(unet))

    def restore(self):
        self.unet.forward = self.unet._original_forward

    def residuals(self, hs_shapes, mid_shape, like):
        g = torch.Generator().manual_seed(11)
        res = [torch.randn(s, generator=g).to(like) * self.scale for s in hs_shapes]
        return res, torch.randn(mid_shape, generator=g).to(like) * self.scale

    def forward(self, unet, x, timesteps, context):
        """CN's forward_webui, on the test UNet's own blocks: encoder as is, residuals into the decoder."""
        self.forward_calls += 1
        if self.reference_latent is not None:  # reference-only: the UNet on the (noised) reference first
            self.original_forward(self.reference_latent.expand_as(x), timesteps, context)
        emb = unet.embed(timesteps)
        h, hs = unet.encode(x, emb, context)  # the encoder: no ControlNet residual here
        control = self.residuals([tuple(s.shape) for s in hs], tuple(h.shape), h)
        return unet.decode(h, hs, emb, context, control)


def test_probe_through_a_controlnet_forward_sees_the_unets_own_encoder(setup, hook_count):
    unet, noise, ctx, t = setup
    call = lambda x: unet(x, t, context=ctx)  # noqa: E731
    plain = probe_maps(unet, call, noise, paper_layers(unet), PHRASES)
    cn = FakeControlNetHook(unet)
    try:
        with torch.no_grad():
            assert not torch.equal(unet(noise, t, context=ctx), cn.original_forward(noise, t, ctx)), "no CN effect"
        calls = cn.forward_calls
        maps = probe_maps(unet, call, noise, paper_layers(unet), PHRASES)
        assert cn.forward_calls == calls + 1, "the probe did not go through ControlNet's forward"
        assert all(torch.equal(a, b) for a, b in zip(plain, maps))
        # the early stop is a BaseException: CN's `except Exception` error cleanup (moving its models to the
        # CPU) does not run for it
        assert cn.cleanups == 0
        assert unet.__dict__["forward"].__func__.__name__ == "forward_webui"
        assert hook_count(unet) == 0
    finally:
        cn.restore()


def test_layout_through_a_controlnet_forward_equals_layout_without(setup):
    unet, noise, ctx, t = setup
    call = lambda x: unet(x, t, context=ctx)  # noqa: E731
    plain = run_layout(unet, call, noise, PHRASES, BOXES, rounds=2)
    cn = FakeControlNetHook(unet)
    try:
        with_cn = run_layout(unet, call, noise, PHRASES, BOXES, rounds=2)
    finally:
        cn.restore()
    assert torch.equal(plain.noise, with_cn.noise)


def test_probe_measures_the_initial_noise_not_a_reference_pre_pass(setup):
    unet, noise, ctx, t = setup
    call = lambda x: unet(x, t, context=ctx)  # noqa: E731
    expected = probe_maps(unet, call, noise, paper_layers(unet), PHRASES)
    reference = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(5))
    cn = FakeControlNetHook(unet, residual_scale=0.0, reference_latent=reference)
    try:
        maps = probe_maps(unet, call, noise, paper_layers(unet), PHRASES)
    finally:
        cn.restore()
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(expected, maps))
