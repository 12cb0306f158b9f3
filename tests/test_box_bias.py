"""BoxBias: the per-box sign and weight of layout guidance, against hand-computed grids."""
import pytest
import torch

from lib_initedit.layout.box_bias import MAX_SIZE_GAIN, BoxBias
from lib_initedit.toy.ablation import ResearchBoxBias


def test_default_is_plus_inside_minus_outside_by_cell_centre():
    col = BoxBias().column((0.0, 0.0, 0.5, 0.25), 4.0, 4, 4).reshape(4, 4)
    want = torch.full((4, 4), -4.0)
    want[0, :2] = 4.0  # cell centres (0.125, 0.375) x (0.125): inside
    assert torch.equal(col, want) and col.dtype == torch.float32
    assert torch.equal(BoxBias().sign((0.0, 0.0, 0.5, 0.25), 4, 4).reshape(4, 4), want / 4)


@pytest.mark.parametrize("box, gain", [((0, 0, 0.2, 0.2), MAX_SIZE_GAIN),  # 0.16 / 0.04 = 4, capped
                                       ((0, 0, 0.4, 0.2), 2.0), ((0, 0, 0.5, 0.5), 1.0), ((0, 0, 1, 1), 1.0)])
def test_size_scaling_strengthens_small_boxes_only(box, gain):
    assert BoxBias().weight(box) == 1.0
    assert BoxBias(size_power=1.0).weight(box) == pytest.approx(gain)
    assert ResearchBoxBias(size_power=1.0, size_floor=0.25).weight((0, 0, 1, 1)) == pytest.approx(0.25)


def test_large_core_pulls_only_the_centre_of_a_large_box():
    large = BoxBias(large_core=0.5).sign((0.0, 0.0, 1.0, 1.0), 8, 8).reshape(8, 8)
    assert large[3, 3] == 1.0 and large[0, 0] == 0.0 and large[7, 7] == 0.0 and large[2, 2] == 1.0
    small = BoxBias(large_core=0.5).sign((0.0, 0.0, 0.25, 0.25), 8, 8).reshape(8, 8)  # 6 % of the image: whole box
    assert small[:2, :2].eq(1).all() and small[2:, :].eq(-1).all()


def test_research_knobs_change_only_what_they_say():
    box = (0.0, 0.0, 0.5, 0.5)
    assert torch.equal(ResearchBoxBias().sign(box, 8, 8), BoxBias().sign(box, 8, 8))
    area_edges = ResearchBoxBias(edge="area").column((0.0, 0.0, 0.375, 0.5), 2.0, 4, 4).reshape(4, 4)
    assert area_edges[0, 0] == 2.0 and area_edges[0, 1] == 0.0 and area_edges[0, 3] == -2.0  # cell 1: half inside
    large = ResearchBoxBias(large_inside=1.0).column((0, 0, 1, 0.64), 5.0, 4, 4).reshape(4, 4)
    assert torch.allclose(large[:2], torch.full((2, 4), 5.0 * 0.16 / 0.64)) and torch.equal(large[3], torch.full((4,), -5.0))
    core = ResearchBoxBias(core=0.5).column(box, 1.0, 8, 8).reshape(8, 8)
    assert core[1, 1] == 1.0 and core[0, 0] == 0.0 and core[5, 5] == -1.0
