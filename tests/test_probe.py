import pytest
import torch

from lib_initedit.probe import probe_maps, run_layout
from lib_initedit.attention import find_cross_attention, select_layers
from tests.ldm_like import UNetModel


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    unet = UNetModel(model_channels=32, context_dim=32).eval()
    g = torch.Generator().manual_seed(7)
    noise = torch.randn(2, 4, 32, 32, generator=g)
    ctx = torch.randn(2, 77, 32, generator=g)
    t = torch.full((2,), 981)
    return unet, noise, ctx, lambda x: unet(x, t, context=ctx)


def blocks(x, b=4):
    c, h, w = x.shape
    return x.reshape(c, h // b, b, w // b, b).permute(1, 3, 0, 2, 4).reshape(-1, c * b * b)


def test_layout_is_a_block_permutation_and_moves_attention(setup):
    unet, noise, ctx, call = setup
    positions = [[[2], [5, 6]], [[3]]]
    boxes = [[(0, 0, 0.5, 0.5), (0.5, 0.5, 1, 1)], [(0.25, 0.25, 0.75, 0.75)]]
    res = run_layout(unet, call, noise, positions, boxes, rounds=1, measure_after=False)
    assert res.probes == 1 and not res.measured_after
    for b in range(2):
        before = {tuple(r.tolist()) for r in blocks(noise[b])}
        after = {tuple(r.tolist()) for r in blocks(res.noise[b])}
        assert before == after  # the same blocks, whole, elsewhere
        for rep in res.reports[b]:
            assert rep.share_after >= rep.share_before  # predicted maps move with the blocks
    assert len(res.maps_before[0]) == 2 and res.maps_before[0].shape == (2, 8, 8)


def test_rounds_and_measurement_probe_again(setup):
    unet, noise, ctx, call = setup
    res = run_layout(unet, call, noise, [[[2]], [[2]]], [[(0, 0, 0.5, 1)], []], rounds=3, measure_after=True)
    assert res.probes == 4 and res.measured_after
    assert torch.equal(res.noise[1], noise[1])  # no boxes: untouched
    assert not torch.equal(res.noise[0], noise[0])
    assert torch.equal(res.noise[0].flatten().sort().values, noise[0].flatten().sort().values)


def test_same_inputs_same_output(setup):
    unet, noise, ctx, call = setup
    args = (unet, call, noise, [[[2]], [[4]]], [[(0, 0, 0.5, 0.5)], [(0.5, 0, 1, 1)]])
    assert torch.equal(run_layout(*args).noise, run_layout(*args).noise)


def test_interrupt_stops_between_probes(setup):
    unet, noise, ctx, call = setup
    res = run_layout(unet, call, noise, [[[2]], [[2]]], [[(0, 0, 0.5, 1)], []], rounds=3, should_stop=lambda: True)
    assert res.probes == 0 and torch.equal(res.noise, noise)


def test_multi_layer_maps_average(setup):
    unet, noise, ctx, call = setup
    layers = select_layers(find_cross_attention(unet), "level")
    maps = probe_maps(unet, call, noise, layers, [[[2, 3]], [[2, 3]]])
    assert maps[0].shape == (1, 8, 8)
    assert torch.all(maps[0] > 0)
