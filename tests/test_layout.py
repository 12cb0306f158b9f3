import torch

from lib_initedit.layout.placement import (BlockGrid, assign_blocks, exclusive_boxes, normalise_maps, permute_blocks,
                                 plan_layout, rebuild_permutation, swap_permutation)


def cells(mask):
    return sorted(torch.nonzero(mask.flatten()).flatten().tolist())


def is_permutation(perm, n):
    return sorted(perm.tolist()) == list(range(n))


def test_one_object_takes_top_n_cells_into_the_box():
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(1, 8, 8, generator=g)
    box = (0.0, 0.0, 0.5, 0.5)  # 16 cells
    regions = exclusive_boxes([box], 8, 8)
    chosen = assign_blocks(normalise_maps(maps), regions)
    expected = torch.argsort(-maps.flatten(), stable=True)[:16].tolist()
    assert chosen[0] == expected


def test_two_objects_priority_as_in_the_paper():
    # object 0 dominates the left half, object 1 the right half
    a = torch.zeros(4, 4)
    b = torch.zeros(4, 4)
    a[:, :2] = torch.arange(8, dtype=torch.float32).reshape(4, 2) + 10
    b[:, 2:] = torch.arange(8, dtype=torch.float32).reshape(4, 2) + 10
    a[:, 2:] = 1.0
    b[:, :2] = 1.0
    maps = torch.stack([a, b])
    # box 0 needs 12 cells (more than its 8 own-class ones), box 1 only 2
    regions = exclusive_boxes([(0, 0, 0.75, 1.0), (0.75, 0, 1.0, 0.5)], 4, 4)
    chosen = assign_blocks(normalise_maps(maps), regions)
    scores = normalise_maps(maps).flatten(1)
    own0 = sorted([i for i in range(16) if i % 4 < 2], key=lambda i: -scores[0, i].item())
    own1 = sorted([i for i in range(16) if i % 4 >= 2], key=lambda i: -scores[1, i].item())
    assert chosen[1] == own1[:2]  # the smaller box picks first: its two strongest cells
    # box 0: all own-class cells by descending score, then object 1's weakest free cells
    rest = sorted([i for i in own1 if i not in chosen[1]], key=lambda i: scores[1, i].item())
    assert chosen[0] == own0 + rest[:4]


def test_ties_are_broken_by_raster_order():
    maps = torch.ones(1, 4, 4)
    chosen = assign_blocks(normalise_maps(maps), exclusive_boxes([(0.5, 0.5, 1, 1)], 4, 4))
    assert chosen[0] == [0, 1, 2, 3]


def test_overlap_goes_to_the_smaller_box():
    regions = exclusive_boxes([(0, 0, 1, 1), (0.25, 0.25, 0.75, 0.75)], 8, 8)
    assert not (regions[0] & regions[1]).any()
    assert regions[1].sum() == 16 and regions[0].sum() == 64 - 16


def test_three_boxes_disjoint_and_filled():
    g = torch.Generator().manual_seed(3)
    maps = torch.rand(3, 16, 16, generator=g)
    boxes = [(0, 0, 0.4, 0.4), (0.3, 0.3, 0.8, 0.8), (0.6, 0, 1, 0.5)]
    regions = exclusive_boxes(boxes, 16, 16)
    chosen = assign_blocks(normalise_maps(maps), regions)
    flat = [c for picks in chosen for c in picks]
    assert len(flat) == len(set(flat))
    assert [len(p) for p in chosen] == regions.flatten(1).sum(1).tolist()
    for perm in (swap_permutation(chosen, regions), rebuild_permutation(chosen, regions)):
        assert is_permutation(perm, 256)
        for k, picks in enumerate(chosen):  # every chosen block lands in its own box
            dst_of = {int(perm[d]): d for d in range(256)}
            assert all(regions[k].flatten()[dst_of[p]] for p in picks)


def test_swap_moves_as_little_as_possible():
    g = torch.Generator().manual_seed(1)
    maps = torch.rand(1, 8, 8, generator=g)
    regions = exclusive_boxes([(0, 0, 0.5, 0.5)], 8, 8)
    chosen = assign_blocks(normalise_maps(maps), regions)
    perm = swap_permutation(chosen, regions)
    moved = (perm != torch.arange(64)).sum().item()
    incoming = [i for i in chosen[0] if not regions[0].flatten()[i]]
    assert moved == 2 * len(incoming)  # pure pairwise swaps
    # a chosen block already in the box stays
    for i in chosen[0]:
        if regions[0].flatten()[i]:
            assert perm[i] == i


def test_rebuild_places_by_rank_in_raster_order():
    maps = torch.arange(16, dtype=torch.float32).reshape(1, 4, 4)
    regions = exclusive_boxes([(0, 0, 0.5, 0.5)], 4, 4)
    chosen = assign_blocks(normalise_maps(maps), regions)
    perm = rebuild_permutation(chosen, regions)
    box = cells(regions[0])
    assert [int(perm[d]) for d in box] == [15, 14, 13, 12]
    outside = [d for d in range(16) if d not in box]
    assert [int(perm[d]) for d in outside] == [i for i in range(12)]


def test_permute_blocks_moves_whole_blocks_and_keeps_values():
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(4, 64, 64, generator=g)
    grid = BlockGrid.for_map((16, 16), (64, 64))
    assert (grid.rows, grid.cols, grid.bh, grid.bw) == (16, 16, 4, 4)
    perm = torch.randperm(256, generator=g)
    out = permute_blocks(noise, perm, grid)
    assert torch.equal(out.flatten().sort().values, noise.flatten().sort().values)
    for dst in (0, 17, 255):
        r, c = divmod(dst, 16)
        sr, sc = divmod(int(perm[dst]), 16)
        assert torch.equal(out[:, 4 * r:4 * r + 4, 4 * c:4 * c + 4], noise[:, 4 * sr:4 * sr + 4, 4 * sc:4 * sc + 4])


def test_odd_latent_sizes_leave_the_partial_edge_in_place():
    noise = torch.randn(4, 75, 66)
    grid = BlockGrid.for_map((19, 17), (75, 66))
    assert (grid.bh, grid.bw, grid.rows, grid.cols) == (4, 4, 18, 16)
    edit = plan_layout(torch.rand(2, 19, 17), [(0, 0, 0.5, 0.5), (0.5, 0.5, 1, 1)], (75, 66))
    out = permute_blocks(noise, edit.perm, edit.grid)
    assert torch.equal(out[:, 72:], noise[:, 72:]) and torch.equal(out[:, :, 64:], noise[:, :, 64:])
    assert torch.equal(out.flatten().sort().values, noise.flatten().sort().values)


def test_smoothing_and_normalisations():
    from lib_initedit.layout.placement import smooth_maps

    g = torch.Generator().manual_seed(2)
    maps = torch.rand(2, 8, 8, generator=g)
    assert torch.equal(smooth_maps(maps, 0.0), maps)
    flat = torch.full((1, 8, 8), 0.3)
    assert torch.allclose(smooth_maps(flat, 1.0), flat)
    spike = torch.zeros(1, 9, 9)
    spike[0, 4, 4] = 1.0
    blurred = smooth_maps(spike, 1.0)[0]
    assert abs(float(blurred.sum()) - 1.0) < 1e-5 and blurred[4, 4] < 1.0 and blurred[4, 5] > 0
    assert torch.allclose(blurred, blurred.flip(0)) and torch.allclose(blurred, blurred.T)
    z = normalise_maps(maps, "zscore").flatten(1)
    assert torch.allclose(z.mean(1), torch.zeros(2), atol=1e-6) and torch.allclose(z.std(1), torch.ones(2))
    assert torch.allclose(normalise_maps(maps, "max").flatten(1).amax(1), torch.ones(2))
    assert torch.allclose(normalise_maps(maps).flatten(1).mean(1), torch.ones(2))


def test_pool_blocks_prefers_better_candidate_blocks_each_once():
    from lib_initedit.layout.placement import pool_blocks, replace_blocks

    # base: phrase 0 is weak everywhere except cell 63; the box is the top-left 2x2 cells (0, 1, 8, 9)
    base = torch.ones(2, 8, 8)
    base[0].view(-1)[63] = 5.0
    edit = plan_layout(base, [(0, 0, 0.25, 0.25), (0.75, 0.75, 1, 1)], (32, 32))
    cand = torch.ones(2, 8, 8)
    cand[0].view(-1)[[5, 20]] = torch.tensor([9.0, 8.0])  # two strong own-label blocks of phrase 0
    cand[1].view(-1)[20] = 20.0  # ...but phrase 1 wants block 20 even more: it is labelled 1
    pool = pool_blocks(edit, [normalise_maps(cand)])
    incoming = [(j, src) for _, j, src in pool.replacements]
    assert (1, 5) in incoming and len(incoming) == len(set(incoming))
    box0 = {0, 1, 8, 9}
    for dst, j, src in pool.replacements:
        assert j == 1
        assert dst in box0 or dst in {54, 55, 62, 63}
    # base block 63 (score 5) moved into box 0 by the swap, and is kept: it beats every other base block
    replaced = {dst for dst, _, _ in pool.replacements}
    assert 63 in {int(edit.perm[d]) for d in box0 if d not in replaced}
    where = {(j, src): dst for dst, j, src in pool.replacements}
    assert where[(1, 5)] in box0  # phrase 0's strong candidate block goes to box 0
    assert where[(1, 20)] in {54, 55, 62, 63}  # labelled phrase 1: it goes to box 1, not to box 0
    noise = torch.randn(3, 32, 32)
    other = torch.randn(3, 32, 32)
    out = replace_blocks(noise, pool.replacements, [other], edit.grid)
    dst, j, src = pool.replacements[0]
    (r, c), (sr, sc) = divmod(dst, 8), divmod(src, 8)
    assert torch.equal(out[:, 4 * r:4 * r + 4, 4 * c:4 * c + 4], other[:, 4 * sr:4 * sr + 4, 4 * sc:4 * sc + 4])
    untouched = torch.ones(8, 8, dtype=torch.bool)
    for dst, _, _ in pool.replacements:
        untouched.view(-1)[dst] = False
    mask = untouched.repeat_interleave(4, 0).repeat_interleave(4, 1)
    assert torch.equal(out[:, mask], noise[:, mask])
