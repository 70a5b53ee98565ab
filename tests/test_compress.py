"""The compression framework (issue 10): projections, composition, ADMM, resume, CLI.

Fast: tiny random tensors, the digits CNN on subsets of scikit-learn's bundled digits, CPU.
"""

from __future__ import annotations

import itertools
import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from analysis.cli import main
from mappers.compress import (
    BlockStructured,
    Compressor,
    Connectivity,
    Pattern,
    Polarize,
    Quantize,
    Structured,
    Unify,
    Unstructured,
    fit,
    manifest_source,
    parse_compression,
    pattern_library,
    project_all,
    state_digest,
)
from mappers.compress.projections import FREE, UNIFIED, ZERO, choose_blocks, keep_count, matrix
from mappers.quantize import quantize_weights
from sim.errors import ConfigError, UserError
from workloads.models import DigitsCNN, LeNet5
from workloads.spec import builtin_workloads, load_workload

ISAAC = "isaac_32nm"


def rand(*shape, seed=0):
    """Random weights without exact zeros or ties."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g)


def code(*positions):
    """9-bit pattern code of kept positions of a row-major 3x3 kernel."""
    return sum(1 << p for p in positions)


LIB = (code(0, 1, 3, 4), code(1, 4, 5, 7), code(2, 4, 6, 8), code(3, 4, 5, 1))

# (projection, weight shape): every method, on a conv or a matrix as it applies.
CASES = [
    (Unstructured(3.0), (6, 5)),
    (Structured(2.0, "filter"), (8, 3, 3, 3)),
    (Structured(2.0, "channel"), (8, 4, 3, 3)),
    (Structured(3.0, "channel"), (6, 9)),
    (Structured(2.0, "both"), (8, 6, 3, 3)),
    (Pattern(LIB), (4, 3, 3, 3)),
    (Connectivity(2.0), (4, 3, 3, 3)),
    (BlockStructured((4, 4), column_rate=2.0, row_rate=2.0), (8, 12)),
    (BlockStructured((3, 5), column_rate=3.0), (7, 11)),
    (Unify((4, 2), zero_fraction=0.25, unify_fraction=0.5), (6, 16)),
    (Unify((2, 2), unify_fraction=1.0), (4, 2, 3, 3)),
    (Polarize(4), (6, 18)),
    (Polarize(8), (5, 3, 3, 3)),
    (Quantize(4), (6, 10)),
    (Quantize(2), (4, 3, 3, 3)),
    (Quantize(2, "fit"), (4, 3, 3, 3)),
    (Quantize(3, "fit"), (6, 10)),
]


@pytest.mark.parametrize(("proj", "shape"), CASES, ids=lambda c: repr(c)[:40])
def test_projection_meets_its_constraint_and_is_idempotent(proj, shape):
    w = rand(*shape, seed=1)
    assert not proj.satisfied(w)  # dense random weights violate it: the check can fail
    p = proj.project(w)
    assert p.shape == w.shape and p.dtype == w.dtype
    assert proj.satisfied(p)
    assert torch.equal(proj.project(p), p)


@pytest.mark.parametrize(("proj", "shape"), [
    (Unstructured(1.0), (6, 5)), (Structured(1.0, "filter"), (4, 3, 3, 3)),
    (Structured(1.0, "channel"), (4, 3)), (Connectivity(1.0), (4, 3, 3, 3)),
    (BlockStructured((2, 2), 1.0, 1.0), (5, 7)), (Unify((2, 2)), (6, 4)),
])
def test_rate_one_keeps_a_dense_model_dense(proj, shape):
    w = rand(*shape, seed=2)
    assert torch.equal(proj.project(w), w)
    assert proj.satisfied(w)


def test_structured_both_keeps_a_block_of_whole_filters_and_channels():
    """axis: both keeps ceil(8 / 2) = 4 filters and, of them, ceil(6 / 2) = 3 channels: a
    4 x 3 block of whole 3x3 kernels (the packed mapping's 27 rows x 4 columns). Moving the
    rate moves the block; a weight left outside it is refused by ``satisfied``."""
    w = rand(8, 6, 3, 3, seed=6)
    for rate, (f, c) in ((2.0, (4, 3)), (3.0, (3, 2)), (1.0, (8, 6))):
        p = Structured(rate, "both").project(w)
        assert int((p.abs().sum(dim=(1, 2, 3)) > 0).sum()) == f
        assert int((p.abs().sum(dim=(0, 2, 3)) > 0).sum()) == c
        assert int((p != 0).sum()) == f * c * 9
    p = Structured(2.0, "both").project(w)
    kept_f = p.abs().sum(dim=(1, 2, 3)) > 0
    assert Structured(2.0, "filter").satisfied(p) and Structured(2.0, "channel").satisfied(p)
    q = p.clone()
    q[~kept_f, 0] = 1.0  # one more filter alive
    assert not Structured(2.0, "both").satisfied(q)


def _dist(a, b):
    return float((a.double() - b.double()).pow(2).sum())


def _subsets_masks(n, k):
    for keep in itertools.combinations(range(n), k):
        m = torch.zeros(n, dtype=torch.bool)
        m[list(keep)] = True
        yield m


def test_unstructured_and_structured_are_the_nearest_among_all_candidates():
    w = rand(2, 3, seed=3)
    best = min(_dist(w, w * m.reshape(2, 3)) for m in _subsets_masks(6, 2))
    assert _dist(w, Unstructured(3.0).project(w)) == pytest.approx(best, abs=1e-12)
    w = rand(5, 2, 3, 3, seed=4)
    best = min(_dist(w, w * m[:, None, None, None]) for m in _subsets_masks(5, 3))
    assert _dist(w, Structured(5 / 3, "filter").project(w)) == pytest.approx(best, abs=1e-12)


def test_pattern_then_connectivity_is_the_nearest_point_of_both_constraints():
    w = rand(2, 2, 3, 3, seed=5)
    masks = [torch.tensor([(c >> i) & 1 for i in range(9)], dtype=w.dtype).reshape(3, 3)
             for c in LIB]
    best = math.inf
    for choice in itertools.product(range(len(LIB)), repeat=4):
        patterned = w.clone().reshape(4, 3, 3)
        for k, c in enumerate(choice):
            patterned[k] = patterned[k] * masks[c]
        for keep in _subsets_masks(4, 2):
            cand = patterned * keep[:, None, None].to(w.dtype)
            best = min(best, _dist(w, cand.reshape(w.shape)))
    got = project_all([Connectivity(2.0), Pattern(LIB)], w)  # composed in ORDER
    assert Pattern(LIB).satisfied(got) and Connectivity(2.0).satisfied(got)
    assert _dist(w, got) == pytest.approx(best, abs=1e-12)


def test_bsp_column_or_row_pruning_alone_is_the_nearest():
    w = rand(4, 6, seed=6)  # blocks of 2x3: keep 2 of 3 columns in each block
    best = 0.0
    for r in (0, 2):
        for c in (0, 3):
            b = w[r:r + 2, c:c + 3]
            best += min(_dist(b, b * m[None, :]) for m in _subsets_masks(3, 2))
    got = BlockStructured((2, 3), column_rate=1.5).project(w)
    assert _dist(w, got) == pytest.approx(best, abs=1e-12)
    got = BlockStructured((2, 3), row_rate=2.0).project(w)
    best = sum(min(_dist(b, b * m[:, None]) for m in _subsets_masks(2, 1))
               for b in (w[0:2, 0:3], w[0:2, 3:6], w[2:4, 0:3], w[2:4, 3:6]))
    assert _dist(w, got) == pytest.approx(best, abs=1e-12)


def test_bsp_prunes_whole_rows_and_columns_inside_each_block():
    w = rand(8, 8, seed=7)
    got = BlockStructured((4, 4), column_rate=2.0, row_rate=4.0).project(w)
    for r in (0, 4):
        for c in (0, 4):
            b = got[r:r + 4, c:c + 4] != 0
            assert int(b.any(0).sum()) == 2 and int(b.any(1).sum()) == 1
            assert int(b.sum()) == 2  # the surviving row keeps both surviving columns


def test_unify_is_the_nearest_assignment_of_zeroed_unified_and_free_blocks():
    w = rand(4, 4, seed=8)  # crossbar view (4, 4): four 2x2 blocks
    proj = Unify((2, 2), zero_fraction=0.25, unify_fraction=0.5)
    v = w.T
    blocks = [(slice(r, r + 2), slice(c, c + 2)) for r in (0, 2) for c in (0, 2)]
    best = math.inf
    for states in itertools.product(range(3), repeat=4):
        if states.count(2) < 1 or states.count(1) + states.count(2) < 3:
            continue
        cand = v.clone()
        for s, (rs, cs) in zip(states, blocks, strict=True):
            if s == 2:
                cand[rs, cs] = 0
            elif s == 1:
                cand[rs, cs] = torch.sign(v[rs, cs]) * v[rs, cs].abs().mean()
        best = min(best, _dist(v, cand))
    got = proj.project(w)
    assert _dist(w, got) == pytest.approx(best, abs=1e-9)
    mags = [got.T[rs, cs].abs() for rs, cs in blocks]
    assert sum(bool((m == 0).all()) for m in mags) == 1
    assert sum(bool((m == m.flatten()[0]).all()) and bool(m.any()) for m in mags) == 2
    assert torch.equal(torch.sign(got)[got != 0], torch.sign(w)[got != 0])  # signs kept


def test_unify_block_shape_moves_the_result():
    w = rand(8, 8, seed=9)
    a = Unify((2, 2), unify_fraction=1.0).project(w)
    b = Unify((4, 1), unify_fraction=1.0).project(w)
    assert torch.unique(a.abs()).numel() == 16 and torch.unique(b.abs()).numel() == 16
    assert not torch.equal(a, b)
    # a frozen projection keeps its block choice even when the weights change
    proj = Unify((2, 2), zero_fraction=0.5)
    frozen = proj.freeze(w)
    assert torch.equal(frozen.project(w), proj.project(w))
    w2 = w.clone()
    w2[:4] *= 10  # the free blocks would now be chosen elsewhere...
    assert not torch.equal(proj.project(w2) == 0, frozen.project(w2) == 0)
    assert torch.equal(frozen.project(w2) == 0, frozen.project(w) == 0)  # ...not frozen


def _assignment_reference(zero, unify, n_zero, n_unify):
    """The former block choice of ``Unify``: scipy's rectangular assignment of the blocks to
    ``n_zero`` zero slots and ``n_unify`` unify slots (slow, O(n**3); the oracle of
    :func:`choose_blocks`)."""
    from scipy.optimize import linear_sum_assignment

    state = np.full(len(zero), FREE, dtype=np.int64)
    if n_zero + n_unify:
        cost = np.concatenate([np.repeat(zero[:, None], n_zero, axis=1),
                               np.repeat(unify[:, None], n_unify, axis=1)], axis=1)
        rows, cols = linear_sum_assignment(cost)
        state[rows] = np.where(cols < n_zero, ZERO, UNIFIED)
    return state


def _block_costs(proj, w):
    """Per block of ``proj`` on ``w``: (cost of zeroing, cost of unifying), float64."""
    tiles = proj._tiles(w)
    a, _, _ = proj._shared(tiles)
    mag = tiles.abs()
    unify = torch.where(mag != 0, mag - a[..., None], torch.zeros_like(mag)).pow(2).sum(-1)
    return mag.pow(2).sum(-1).reshape(-1).numpy(), unify.reshape(-1).numpy()


def _choice_cost(state, zero, unify):
    """Exact summed cost of block states (floats summed as fractions)."""
    return (sum((Fraction(float(c)) for c in zero[state == ZERO]), Fraction(0))
            + sum((Fraction(float(c)) for c in unify[state == UNIFIED]), Fraction(0)))


UNIFY_SHAPES = [((2, 2), (6, 4)), ((4, 2), (6, 16)), ((8, 1), (16, 8, 3, 3)),
                ((1, 8), (16, 8, 3, 3)), ((4, 4), (10, 6, 3, 3)), ((3, 5), (7, 11))]
UNIFY_FRACTIONS = [(0.5, 0.3), (0.25, 0.5), (0.0, 0.6), (0.7, 0.0), (0.5, 0.5), (0.1, 0.9)]


@pytest.mark.parametrize(("block", "shape"), UNIFY_SHAPES)
def test_unify_choice_is_the_assignment_reference_bit_for_bit(block, shape):
    # Generic random weights: the nearest assignment is unique, so the exact sort-and-split
    # choice must equal the former linear_sum_assignment choice block for block, and the
    # projected weights bit for bit.
    for seed, (zf, uf) in enumerate(UNIFY_FRACTIONS):
        proj = Unify(block, zf, uf)
        w = rand(*shape, seed=100 + seed)
        zero, unify = _block_costs(proj, w)
        ref = _assignment_reference(zero, unify, *proj.counts(len(zero)))
        assert proj.choose(w) == tuple(int(s) for s in ref)
        frozen = Unify(block, zf, uf, assignment=tuple(int(s) for s in ref))
        assert torch.equal(proj.project(w), frozen.project(w))


def test_unify_choice_is_minimal_with_ties_against_the_reference_and_brute_force():
    rng = np.random.default_rng(0)
    for trial in range(300):
        n = int(rng.integers(1, 40))
        kind = trial % 3
        if kind == 0:  # small integer costs: ties everywhere, float sums exact
            zero = rng.integers(0, 4, n).astype(np.float64)
            unify = rng.integers(0, 4, n).astype(np.float64)
        elif kind == 1:  # a few distinct float values, repeated
            vals = rng.random(3)
            zero, unify = vals[rng.integers(0, 3, n)], vals[rng.integers(0, 3, n)]
        else:  # blocks already zero (both costs 0) or already unified (unify cost 0)
            zero = rng.random(n)
            unify = rng.random(n) * (rng.random(n) < 0.5)
            zero[rng.random(n) < 0.3] = 0.0
            unify[zero == 0] = 0.0
        n_zero = int(rng.integers(0, n + 1))
        n_unify = int(rng.integers(0, n - n_zero + 1))
        got = choose_blocks(zero, unify, n_zero, n_unify)
        assert int((got == ZERO).sum()) == n_zero and int((got == UNIFIED).sum()) == n_unify
        ref = _assignment_reference(zero, unify, n_zero, n_unify)
        best = _choice_cost(got, zero, unify)
        if kind == 0:
            assert best == _choice_cost(ref, zero, unify)
        else:
            assert float(best) == pytest.approx(float(_choice_cost(ref, zero, unify)),
                                                rel=1e-12, abs=1e-300)
            assert best <= _choice_cost(ref, zero, unify)
        if n <= 7:  # every assignment with the right counts
            brute = min(_choice_cost(np.array(s), zero, unify)
                        for s in itertools.product((FREE, UNIFIED, ZERO), repeat=n)
                        if s.count(ZERO) == n_zero and s.count(UNIFIED) == n_unify)
            assert best == brute
        assert np.array_equal(got, choose_blocks(zero, unify, n_zero, n_unify))


def test_unify_choice_moves_with_the_costs_and_rejects_bad_input():
    zero = np.array([1.0, 5.0, 3.0, 9.0])
    unify = np.array([4.0, 1.0, 2.0, 0.5])
    assert choose_blocks(zero, unify, 1, 1).tolist() == [ZERO, FREE, FREE, UNIFIED]
    assert choose_blocks(zero, unify, 1, 2).tolist() == [ZERO, UNIFIED, FREE, UNIFIED]
    zero[2] = 0.5  # block 2 is now the cheapest to zero
    assert choose_blocks(zero, unify, 1, 1).tolist() == [FREE, FREE, ZERO, UNIFIED]
    assert choose_blocks(zero, unify, 0, 0).tolist() == [FREE] * 4
    with pytest.raises(ValueError, match="cannot choose"):
        choose_blocks(zero, unify, 3, 2)
    with pytest.raises(ValueError, match="finite"):
        choose_blocks(np.array([np.nan, 1.0]), np.array([0.0, 1.0]), 1, 0)


def test_unify_with_tied_blocks_is_nearest_idempotent_and_satisfied():
    # Zero blocks, already-unified blocks and duplicated blocks tie in cost; the projection
    # must still be as near as the reference's and a fixed point of itself.
    w = rand(16, 8, 3, 3, seed=11)
    v = matrix(w).T  # crossbar view (72, 16); [8, 1] blocks = 8 rows of one column
    v[0:8, 0] = 0.0
    v[8:16, 1] = torch.sign(v[8:16, 1]) * 0.7
    v[16:24, 2] = v[24:32, 2]
    v[32:40, 3] = v[24:32, 2]
    w = v.T.reshape(w.shape).contiguous()
    for zf, uf in UNIFY_FRACTIONS:
        proj = Unify((8, 1), zf, uf)
        zero, unify = _block_costs(proj, w)
        ref = _assignment_reference(zero, unify, *proj.counts(len(zero)))
        got = proj.project(w)
        near = _dist(w, Unify((8, 1), zf, uf, assignment=tuple(int(s) for s in ref)).project(w))
        assert _dist(w, got) == pytest.approx(near, rel=1e-12, abs=1e-12)
        assert proj.satisfied(got) and torch.equal(proj.project(got), got)


def test_quantize_is_the_nearest_grid_point_and_maps_exactly_through_the_bridge():
    w = rand(6, 20, seed=10)
    for bits in (2, 4, 8):
        p = Quantize(bits).project(w)
        qmax = 2 ** (bits - 1) - 1
        step = w.abs().amax(1, keepdim=True) / qmax
        assert bool(((p - w).abs() <= step / 2 + 1e-6).all())  # rounding to the nearest level
        q, scale = quantize_weights(p, bits)  # the bridge's own quantizer
        assert torch.allclose(q.double() * scale[:, None], p.double(), rtol=1e-6, atol=0)
        assert int(q.abs().max()) == qmax
        assert max(len(torch.unique(row)) for row in p) <= 2 * qmax + 1  # levels per channel


def test_fit_scale_quantize_lowers_the_error_and_still_maps_exactly_through_the_bridge():
    """``scale: fit`` picks each channel's top level to minimize the squared error: at 2 bits
    the max-scale grid {-max, 0, +max} zeroes every weight below max / 2 (most of a Gaussian
    channel), the fitted ternary keeps about half. The bridge's own max-scale quantizer must
    read back the same codes, so the top level stays in use."""
    w = rand(16, 64, 3, 3, seed=12)
    for bits in (2, 3, 4):
        fixed, fit = Quantize(bits).project(w), Quantize(bits, "fit").project(w)
        e_fixed, e_fit = (fixed - w).pow(2).sum(), (fit - w).pow(2).sum()
        assert e_fit < e_fixed
        # never worse than the max-scale grid in any channel (it is the first candidate)
        assert bool(((fit - w).pow(2).sum((1, 2, 3))
                     <= (fixed - w).pow(2).sum((1, 2, 3)) + 1e-9).all())
        q, scale = quantize_weights(fit, bits)
        assert torch.equal((q.double() * scale[:, None, None, None]).to(fit.dtype), fit)
        assert Quantize(bits).satisfied(fit)
    fixed, fit = Quantize(2).project(w), Quantize(2, "fit").project(w)
    assert float((fixed != 0).float().mean()) < 0.25 < 0.4 < float((fit != 0).float().mean())
    # Gaussian weights: the least-squares ternary error is about 0.19 of the energy
    assert 0.17 < float((fit - w).pow(2).sum() / w.pow(2).sum()) < 0.21
    # the fit moves with its cause: a channel scaled by 3 gets the same codes, 3x the level
    w2 = w.clone()
    w2[0] *= 3
    fit2 = Quantize(2, "fit").project(w2)
    assert torch.allclose(fit2[0], 3 * fit[0]) and torch.equal(fit2[1:], fit[1:])


def test_quantization_zeros_stay_trainable_in_fine_tuning_pruned_weights_do_not():
    """The fine-tuning mask is the pruning structure (every method but ``quantize``): a
    weight rounded to zero by a coarse grid may grow back to a level, a pruned one may not."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(32, 8)

    net = Net()
    spec = parse_compression({"layers": {"fc": {"structured": {"rate": 2},
                                                 "quantize": {"bits": 2}}}}, net)
    comp = Compressor(net, spec)
    comp.freeze()
    (t,) = comp.targets
    support = comp.support(t, t.param)
    projected = comp.project_frozen(t, t.param)
    kept_filters = projected.abs().sum(1) > 0
    assert int(kept_filters.sum()) == 4
    assert torch.equal(support, kept_filters[:, None].expand_as(support))
    assert bool((projected[kept_filters] == 0).any())  # ternary zeros inside kept filters...
    assert bool(support[kept_filters].all())  # ...are not in the mask


def test_polarize_reuses_the_engine_projection():
    from sim.kernels.weights import polarize

    w = rand(6, 16, seed=11)  # crossbar view (16, 6): 4 fragments of 4 rows per column
    got = Polarize(4).project(w)
    assert np.array_equal(got.T.numpy(), polarize(w.T.numpy(), 4))


def test_polarize_fragments_follow_the_crossbar_rows_of_a_convolution():
    w = rand(3, 2, 3, 3, seed=12)  # K = 18 rows in (c, kh, kw) order, N = 3 columns
    got = Polarize(9).project(w)
    for n in range(3):
        for c in range(2):  # fragment c = the 9 rows of input channel c
            vals = got[n, c].flatten()
            assert bool((vals >= 0).all()) or bool((vals <= 0).all())


def test_polarize_is_the_euclidean_nearest():
    w = torch.tensor([[3.0, -2.0, -2.0, 0.5]])  # one fragment: L1 keeps -, L2 keeps +
    got = Polarize(4).project(w)
    best = min(_dist(w, w.clamp(min=0)), _dist(w, w.clamp(max=0)))
    assert _dist(w, got) == pytest.approx(best)


def test_composed_projections_meet_every_constraint():
    lib = pattern_library([rand(16, 8, 3, 3, seed=13)], 6)
    assert len(lib) == 6 and all(c & (1 << 4) for c in lib)  # centre kept
    assert all(bin(c).count("1") == 4 for c in lib)
    conv = [Pattern(tuple(lib)), Connectivity(2.0), Unify((4, 2), 0.1, 0.3), Polarize(8),
            Quantize(4)]
    linear = [Unstructured(3.0), BlockStructured((8, 8), 2.0, 2.0), Unify((2, 2), 0.0, 0.5),
              Polarize(4), Quantize(3)]
    for chain, w in ((conv, rand(16, 8, 3, 3, seed=14)), (linear, rand(24, 40, seed=15))):
        for order in (chain, chain[::-1]):  # the order given does not matter: ORDER applies
            got = project_all(order, w)
            for p in chain:
                assert p.satisfied(got), p
            assert torch.equal(project_all(chain, got), got)


def test_pattern_library_comes_from_the_model_weights():
    w = rand(8, 4, 3, 3, seed=16)
    lib = pattern_library([w], 8)
    w2 = w.clone()
    w2[..., 0, 0] *= 20  # top-left entries now dominate every kernel
    lib2 = pattern_library([w2], 8)
    assert lib != lib2 and all(c & 1 for c in lib2)


def test_gru_gate_matrices_are_pruned_block_by_block_each_on_its_own():
    gru = nn.GRU(input_size=8, hidden_size=8, num_layers=1)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = gru

    spec = parse_compression({"layers": {"gru": {"bsp": {"block": [4, 4], "column_rate": 2,
                                                         "row_rate": 2}}}}, Net())
    comp = Compressor(Net(), spec)
    assert {t.key for t in comp.targets} == {"gru.weight_ih_l0", "gru.weight_hh_l0"}
    with torch.no_grad():
        gru.weight_hh_l0[:8] *= 100  # a dominant reset gate must not starve the others
    projected = comp.project_targets({t.key: t.param for t in comp.targets})
    for t in comp.targets:
        got = projected[t.key]
        for gate in got.chunk(3, dim=0):  # (8, 8): four 4x4 blocks, 2x2 survive in each
            assert int((gate != 0).sum()) == 4 * 4


def _digits(n_train=192):
    from workloads.datasets import load_dataset

    x, y = load_dataset("digits", "train")
    xt, yt = load_dataset("digits", "test")
    return {"x_train": x[:n_train], "y_train": y[:n_train], "x_test": xt, "y_test": yt}


def _trained_digits():
    return load_workload("digits_cnn").load_model()


SPEC = {
    "admm": {"epochs": 1, "rho": 0.01, "rho_growth": 2.0, "updates_per_epoch": 2},
    "finetune": {"epochs": 1},
    "train": {"batch_size": 64, "lr": 0.001, "optimizer": "adam", "seed": 3},
    "patterns": 6,
    "layers": {"conv2": {"pattern": {}, "connectivity": {"rate": 2},
                         "polarize": {"fragment_rows": 8}, "quantize": {"bits": 4}},
               "fc": {"unstructured": {"rate": 4}, "unify": {"block": [4, 2],
                                                            "unify_fraction": 0.25}}},
}


def test_admm_reaches_every_constraint_and_fine_tuning_keeps_the_mask():
    data = _digits(128)
    spec = parse_compression(SPEC, DigitsCNN())
    runs = {}
    for ft in (0, 1):
        model = _trained_digits()
        s = parse_compression({**SPEC, "finetune": {"epochs": ft}}, DigitsCNN())
        runs[ft] = (model, fit(model, s, data, seed=3, progress=False))
    for model, info in runs.values():
        comp = Compressor(model, spec, library=[int(c[::-1], 2) for c in
                                                info["pattern_library"]])
        for t in comp.targets:
            assert all(comp.check(t, t.param).values())
        conv2 = model.conv2.weight
        assert int(((conv2 != 0).any(3).any(2)).sum()) == keep_count(512, 2)
        assert int((model.fc.weight != 0).sum()) <= keep_count(5120, 4)
        assert info["layers"]["conv2.weight"]["methods"]["connectivity"]["kernels_kept"] == 256
        assert info["test_accuracy"] > 0.5  # far above chance (0.1) on the 360 test digits
    (hard, _), (tuned, _) = runs[0], runs[1]
    for name in ("conv2", "fc"):
        w0, w1 = getattr(hard, name).weight, getattr(tuned, name).weight
        assert not bool(((w1 != 0) & (w0 == 0)).any())  # fine-tuning kept pruned weights at 0
        assert not torch.equal(w0, w1)  # ...and did train the others


class _Interrupt(Exception):
    pass


def test_an_interrupted_run_resumes_to_the_same_bits(tmp_path):
    data = _digits(128)
    spec = parse_compression(SPEC, DigitsCNN())
    whole = _trained_digits()
    fit(whole, spec, data, seed=3, progress=False)

    partial = tmp_path / "run.partial"

    def stop(epoch):
        raise _Interrupt(epoch)

    with pytest.raises(_Interrupt):
        fit(_trained_digits(), spec, data, seed=3, progress=False, partial_path=partial,
            fingerprint="f", on_epoch=stop)
    assert partial.is_file()
    epochs = []
    resumed = _trained_digits()
    info = fit(resumed, spec, data, seed=3, progress=False, partial_path=partial,
               fingerprint="f", on_epoch=epochs.append)
    assert epochs == [2]  # only the fine-tuning epoch ran again
    assert [h["epoch"] for h in info["history"]] == [1, 2]
    assert state_digest(resumed) == state_digest(whole)
    # a state of other settings is not resumed
    other = _trained_digits()
    epochs.clear()
    fit(other, spec, data, seed=4, progress=False, partial_path=partial, fingerprint="g",
        on_epoch=epochs.append)
    assert epochs == [1, 2]


def test_compression_yaml_problems_are_reported_with_their_paths():
    bad = {"admm": {"epochs": -1, "rho": 0, "bogus": 1},
           "train": {"optimizer": "lbfgs"},
           "layers": {"conv9": {"unstructured": {"rate": 2}},
                      "conv1": {"pattern": {}, "bsp": {"block": [2, 2]},
                                "unstructured": {"rate": 0.5},
                                "quantize": {"scale": "mean"},
                                "prune": {}},
                      "fc3": {"unify": {"block": [2], "zero_fraction": 0.8,
                                        "unify_fraction": 0.5}}}}
    with pytest.raises(ConfigError) as err:
        parse_compression(bad, LeNet5())
    paths = dict(err.value.problems)
    assert set(paths) >= {"admm.epochs", "admm.rho", "admm.bogus", "train.optimizer",
                          "layers.conv9", "layers.conv1.pattern", "layers.conv1.bsp",
                          "layers.conv1.unstructured.rate", "layers.conv1.quantize.bits",
                          "layers.conv1.quantize.scale",
                          "layers.conv1.prune", "layers.fc3.unify.block", "layers.fc3.unify"}
    assert "5x5" in paths["layers.conv1.pattern"]
    assert "conv1, conv2" in paths["layers.conv9"]


def test_cli_compress_writes_a_workload_that_run_can_use(tmp_path, capsys):
    spec = tmp_path / "c.yaml"
    spec.write_text("name: tiny\nadmm: {epochs: 1}\nfinetune: {epochs: 0}\n"
                    "train: {batch_size: 256, lr: 0.001, optimizer: adam}\n"
                    "layers:\n  fc: {unstructured: {rate: 8}, quantize: {bits: 6}}\n"
                    "  conv1: {quantize: {bits: 6}}\n  conv2: {quantize: {bits: 6}}\n")
    out = tmp_path / "out"
    assert main(["compress", "digits_cnn", str(spec), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "fc.weight" in printed and "8.00x" in printed
    manifest = json.loads((out / "tiny.json").read_text())
    for key in ("command", "seed", "data", "baseline_accuracy", "test_accuracy", "layers",
                "checkpoint_sha256", "history"):
        assert key in manifest
    assert manifest["layers"]["fc.weight"]["nonzero"] == 640
    assert not (out / "tiny.pt.partial").exists()
    workload = load_workload(out / "tiny.yaml")
    assert workload.bits.weights == 6  # every layer on a 6-bit grid: mapped at 6 bits
    # Each quantized layer's bits, and the compression-aware mapping (mappers/compress/mapping)
    assert workload.bits.weights_per_layer == {"conv1": 6, "conv2": 6, "fc": 6}
    assert workload.mapping == "packed"
    model = workload.load_model()
    for layer in (model.conv1, model.conv2, model.fc):
        assert Quantize(6).satisfied(layer.weight.detach())
    assert int((model.fc.weight != 0).sum()) == 640
    assert main(["run", ISAAC, str(out / "tiny.yaml"), "--samples", "10", "--batch-size",
                 "10", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    # The manifest's references: the built-in base workload by name, the compression file
    # from the manifest's own folder; moving the output keeps the base workload resolvable.
    assert manifest["base_workload_builtin"] == "digits_cnn"
    assert manifest_source(out / "tiny.json") == builtin_workloads()["digits_cnn"]
    assert manifest_source(out / "tiny.json", "compression") == spec.resolve()
    moved = tmp_path / "elsewhere" / "deeper"
    moved.mkdir(parents=True)
    (out / "tiny.json").rename(moved / "tiny.json")
    assert manifest_source(moved / "tiny.json") == builtin_workloads()["digits_cnn"]
    with pytest.raises(UserError, match="compression_file"):  # a user file left behind
        manifest_source(moved / "tiny.json", "compression")


@pytest.mark.parametrize("manifest", sorted(
    (Path(__file__).resolve().parents[1] / "workloads" / "compressed").glob("*.json")),
    ids=lambda p: p.stem)
def test_committed_manifests_refer_to_files_that_exist(manifest):
    """Each shipped manifest's base workload and compression file resolve from its folder
    (specs under results/ are written by bench/compress_experiments.py, not shipped)."""
    data = json.loads(manifest.read_text())
    base = manifest_source(manifest)
    assert load_workload(base).name == data["base_workload"]
    if not data["compression_file"].startswith("../../results/"):
        assert manifest_source(manifest, "compression").is_file()


def test_cli_compress_errors_exit_2(tmp_path, capsys):
    assert main(["compress", "digits_cnn", str(tmp_path / "missing.yaml")]) == 2
    assert "compression file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("layers:\n  fc: {bsp: {block: [2, 2], row_rate: 0.5}}\n  nope: {}\n")
    assert main(["compress", "digits_cnn", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "layers.fc.bsp.row_rate" in err and "layers.nope" in err
    good = tmp_path / "good.yaml"
    good.write_text("layers:\n  fc: {unstructured: {rate: 2}}\n")
    assert main(["compress", "digits_cnn", str(good), "--epochs", "-1"]) == 2
    assert "--epochs" in capsys.readouterr().err
    assert main(["compress", "digits_cnn", str(good), "--train-samples", "0"]) == 2
    assert "--train-samples" in capsys.readouterr().err


def test_cli_compress_train_samples_trains_on_the_first_samples(tmp_path):
    """--train-samples N: the run trains on N samples (the manifest records it, the step
    count follows it) and tests on the whole test split."""
    spec = tmp_path / "c.yaml"
    spec.write_text("name: few\nadmm: {epochs: 1}\nfinetune: {epochs: 0}\n"
                    "train: {batch_size: 32, lr: 0.001, optimizer: adam}\n"
                    "layers:\n  fc: {unstructured: {rate: 2}}\n")
    runs = {}
    for n in (64, 96):
        out = tmp_path / f"out{n}"
        assert main(["compress", "digits_cnn", str(spec), "--out", str(out), "--quiet",
                     "--train-samples", str(n)]) == 0
        runs[n] = json.loads((out / "few.json").read_text())
    assert runs[64]["train_samples"] == 64 and runs[96]["train_samples"] == 96
    assert runs[64]["test_samples"] == runs[96]["test_samples"] > 96


def test_a_polarized_quantized_layer_encodes_on_polarized_crossbars():
    from sim.kernels.weights import encode_weights

    w = rand(12, 4, 3, 3, seed=17)  # K = 36 crossbar rows, fragments of 8 rows
    got = project_all([Polarize(8), Quantize(5)], w)
    q, _ = quantize_weights(got, 5)  # the bridge's integers
    wq = q.reshape(12, -1).T.numpy()
    encode_weights(wq, 5, 2, "polarized", 8)  # raises on a fragment of mixed signs
    with pytest.raises(ValueError, match="both signs"):
        encode_weights(quantize_weights(w, 5)[0].reshape(12, -1).T.numpy(), 5, 2,
                       "polarized", 8)


class _RowGRU(nn.Module):
    """A GRU reading the 8x8 digits row by row (8 steps of 8 features)."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(input_size=8, hidden_size=16, batch_first=True)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):  # noqa: D102
        out, _ = self.gru(x.reshape(x.shape[0], 8, 8))
        return self.fc(out[:, -1])


def test_admm_trains_a_gru_into_bsp_blocks():
    torch.manual_seed(0)
    model = _RowGRU()
    spec = parse_compression({
        "admm": {"epochs": 1, "updates_per_epoch": 2}, "finetune": {"epochs": 1},
        "train": {"batch_size": 64, "lr": 0.01, "optimizer": "adam"},
        "layers": {"gru": {"bsp": {"block": [8, 8], "column_rate": 2, "row_rate": 2},
                           "quantize": {"bits": 4}},
                   "fc": {"bsp": {"block": [5, 8], "column_rate": 4}}}}, model)
    info = fit(model, spec, _digits(128), seed=0, progress=False)
    for key in ("gru.weight_ih_l0", "gru.weight_hh_l0"):
        layer = info["layers"][key]
        assert layer["methods"]["bsp"]["satisfied"] and layer["methods"]["quantize"]["satisfied"]
        assert layer["nonzero"] <= layer["weights"] // 4  # half the rows x half the columns
    for gate in model.gru.weight_hh_l0.chunk(3, dim=0):  # (16, 16): 2 x 2 blocks per gate
        for r in (0, 8):
            for c in (0, 8):
                block = gate[r:r + 8, c:c + 8] != 0
                assert int(block.any(0).sum()) <= 4 and int(block.any(1).sum()) <= 4
    assert info["layers"]["fc.weight"]["nonzero"] <= 4 * 5 * 2  # 4 blocks x 5 rows x 2 columns
