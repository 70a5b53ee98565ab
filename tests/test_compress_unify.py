"""Unified blocks stored as one magnitude plus signs (issue 10 deliverable 6, last item).

A layer whose weights share one magnitude per (crossbar row group, column) (weight
unification with block rows a multiple of ``crossbar.group_rows``) is stored as signs
(2-bit weights: a sign and a 1-bit magnitude, in the arch's signed encoding) and its
magnitudes applied digitally after the ADC, per (row group, column): ``CrossbarLayer(scale=)``,
one counted ``scale_multiplies`` event each, priced by a ``multiplier`` component.

Arch: the tiny test arch (tests/conftest.py: crossbars of 8 columns of 2-bit cells with a
unit column, 8-bit offset weights in 4 cell columns, 8 input steps, an exact 6-bit ADC) with
8-row crossbars, so row groups of 8 rows (offset encoding sums a whole crossbar's rows in
one conversion; ``fragment_rows`` is for polarized weights only): 2-bit signs take one cell
column.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mappers import QuantRecipe, map_model
from mappers.compress.mapping import (
    SIGN_BITS,
    pack,
    pack_unified,
    packing_cost,
    unified_magnitudes,
)
from mappers.compress.projections import Unify, project_all
from mappers.quantize import quantize_weights
from sim.engine.placement import layer_geometry, storage_arch
from sim.errors import MappingError
from sim.macros import CrossbarLayer

STEPS, GROUP = 8, 8


@pytest.fixture(scope="module")
def arch(make_arch):
    return make_arch(**{"organization.tiles": 64, "crossbar.rows": GROUP})


def _int_matrix(w: torch.Tensor) -> np.ndarray:
    q, _ = quantize_weights(w, 8)
    return q.reshape(q.shape[0], -1).T.contiguous().numpy()


def _unified_linear(block=(GROUP, 2), zero=0.3, unify=0.7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return project_all([Unify(block, zero, unify)], torch.randn(12, 40, generator=g))


def _product(arch, packing, x, fast):
    store = storage_arch(arch, packing.weight_bits)
    outs, ev_total = [], {}
    for i, (p, xi) in enumerate(zip(packing.parts, packing.gather(x), strict=True)):
        xb = CrossbarLayer(store, p.weights, seed=i, scale=p.scale, exact_fast_path=fast)
        assert xb.exact == fast
        y, ev = xb.matmul(xi)
        outs.append(y)
        for k, v in ev.counts().items():
            ev_total[k] = ev_total.get(k, 0) + v
    return packing.scatter(outs, x.shape[0]), ev_total


@pytest.mark.parametrize("fast", [False, True], ids=["per-row-group", "fast-path"])
def test_unified_layer_stored_as_signs_is_the_integer_product(arch, fast):
    """Oracle: signs in the cells, magnitudes applied after the ADC, give ``x @ W`` exactly."""
    w = _int_matrix(_unified_linear())
    packing = pack_unified(w, arch)
    assert packing.weight_bits == SIGN_BITS and packing.order == "unified"
    assert all(set(np.unique(p.weights)) <= {-1, 0, 1} for p in packing.parts)
    np.testing.assert_array_equal(packing.dense(), w)
    x = np.random.default_rng(1).integers(-127, 128, (5, 40))
    y, ev = _product(arch, packing, x, fast)
    np.testing.assert_array_equal(y, x @ w)
    groups = sum(-(-p.shape[0] // GROUP) * p.shape[1] for p in packing.parts)
    assert ev["scale_multiplies"] == 5 * groups


def test_scale_is_applied_per_row_group_and_column(arch, make_arch):
    """``CrossbarLayer(scale=)`` multiplies each (row group, output) partial output: changing
    one scale changes exactly that group's share of that output, on offset (unit column and
    bias) and differential encodings, per-row-group kernel and fast path alike."""
    rng = np.random.default_rng(2)
    diff = make_arch(**{"crossbar.rows": GROUP, "weights.encoding": "differential",
                        "weights.bits": 9,
                        "crossbar.unit_column": False})
    for a in (arch, diff):
        store = storage_arch(a, SIGN_BITS)
        signs = rng.integers(-1, 2, (20, 3))
        scale = rng.integers(1, 100, (3, 3))
        x = rng.integers(-127, 128, (4, 20))
        eff = signs * np.repeat(scale, GROUP, axis=0)[:20]
        for fast in (False, True):
            xb = CrossbarLayer(store, signs, scale=scale, exact_fast_path=fast)
            y, ev = xb.matmul(x)
            np.testing.assert_array_equal(y, x @ eff)
            assert ev.scale_multiplies == 4 * 3 * 3
            moved = scale.copy()
            moved[1, 2] += 5
            y2, _ = CrossbarLayer(store, signs, scale=moved, exact_fast_path=fast).matmul(x)
            np.testing.assert_array_equal(y2 - y, np.outer(x[:, 8:16] @ signs[8:16, 2],
                                                           [0, 0, 5]))
        y, ev = CrossbarLayer(store, signs).matmul(x)
        assert ev.scale_multiplies == 0
    with pytest.raises(ValueError, match="scale must be integers of shape"):
        CrossbarLayer(storage_arch(arch, SIGN_BITS), np.ones((20, 3), int),
                      scale=np.ones((2, 3), int))


def _structured(arch):
    """K=32, N=8, blocks of 8 x 2, every block unified (magnitudes 1..127, all weights
    nonzero) except the band of rows 8-15 (row group 1) and the block rows 24-31 x
    columns 0-1, zeroed."""
    rng = np.random.default_rng(3)
    mags = rng.integers(1, 128, (4, 4))
    signs = rng.choice([-1, 1], (32, 8))
    w = signs * np.repeat(np.repeat(mags, GROUP, axis=0), 2, axis=1)
    w[8:16] = 0
    w[24:32, 0:2] = 0
    return w


def test_unified_layer_saves_what_its_block_structure_predicts(arch):
    """Crossbars, cell columns and conversions of the sign storage against the same weights
    stored at full bits (both packed), counted from the blocks. One row group per 8-row
    crossbar; 8-bit offset weights take 4 cell columns (2 outputs per crossbar), signs one
    (8 outputs per crossbar)."""
    w = _structured(arch)
    assert unified_magnitudes(w, GROUP) is not None
    full, signs = pack(w, arch), pack_unified(w, arch)
    assert signs.weight_bits == SIGN_BITS
    sign_arch = storage_arch(arch, SIGN_BITS)
    # Full bits: 4 column tiles of 2 outputs; tile 0 keeps groups 0 and 2 (the zeroed block
    # frees group 3 there), tiles 1-3 keep groups 0, 2, 3: 2 + 3 x 3 crossbars, each
    # converting 2 outputs x 4 cell columns + the unit column per step.
    full_xbars = 2 + 3 * 3
    full_conv = STEPS * full_xbars * (2 * 4 + 1)
    # Signs: one column tile of 8 outputs, groups 0, 2, 3: 3 crossbars; group 3's converts
    # only its 6 nonzero outputs (+ unit column).
    sign_xbars = 3
    sign_cols = (8 + 1) + (8 + 1) + (6 + 1)
    sign_conv = STEPS * sign_cols
    assert packing_cost(arch, full.shapes)[:2] == (full_xbars, full_conv)
    assert packing_cost(sign_arch, signs.shapes)[:2] == (sign_xbars, sign_conv)
    cols = sum(layer_geometry(sign_arch, _shape(p)).columns_total for p in signs.parts)
    full_cols = sum(layer_geometry(arch, _shape(p)).columns_total for p in full.parts)
    assert (cols, full_cols) == (sign_cols, full_xbars * 9)
    x = np.random.default_rng(4).integers(-127, 128, (3, 32))
    y, ev = _product(arch, signs, x, fast=False)
    np.testing.assert_array_equal(y, x @ w)
    assert ev["adc_conversions"] == 3 * sign_conv
    assert ev["scale_multiplies"] == 3 * (8 + 8 + 6)
    y_full, ev_full = _product_full(arch, full, x)
    np.testing.assert_array_equal(y_full, y)
    assert ev_full["adc_conversions"] == 3 * full_conv


def _shape(p):
    from sim.engine.placement import LayerShape

    return LayerShape(name="p", k=p.shape[0], n=p.shape[1], vectors=1)


def _product_full(arch, packing, x):
    outs, conv = [], 0
    for p, xi in zip(packing.parts, packing.gather(x), strict=True):
        y, ev = CrossbarLayer(arch, p.weights).matmul(xi)
        outs.append(y)
        conv += ev.adc_conversions
    return packing.scatter(outs, x.shape[0]), {"adc_conversions": conv}


def test_unified_blocks_must_align_with_row_groups(arch):
    """Blocks of 4 rows inside row groups of 8: refused, naming the layer and the fix;
    a layer that is not unified maps at full bits; mapping: packed never stores signs."""
    w = _int_matrix(_unified_linear(block=(4, 2), zero=0.0, unify=1.0))
    with pytest.raises(MappingError, match=r"layer 'fc'.*blocks of 4 rows.*row groups of 8 "
                                           r"rows.*block: \[8, \.\.\.\]"):
        pack_unified(w, arch, name="fc")
    free = _int_matrix(torch.randn(12, 40, generator=torch.Generator().manual_seed(5)))
    assert pack_unified(free, arch).weight_bits is None
    assert pack(_int_matrix(_unified_linear()), arch).weight_bits is None


def test_bridge_maps_unified_layer_as_signs_and_reports_it(arch):
    """``QuantRecipe(unified=True)``: the bridge stores the layer as signs (fewer crossbars
    and conversions than ``packed``), gives the same outputs, counts the multiplies, and the
    run's per-layer mapping report says so; the events are priced."""
    from analysis.run import LoadedWorkload, simulate
    from workloads.spec import Bits

    model = nn.Sequential(nn.Linear(40, 12)).eval()
    with torch.no_grad():
        model[0].weight.copy_(_unified_linear())
        model[0].bias.zero_()
    g = torch.Generator().manual_seed(6)
    x = torch.randn(6, 40, generator=g)
    y = torch.randint(0, 12, (6,), generator=g)
    results = {}
    for mapping in ("packed", "unified"):
        lw = LoadedWorkload(name="t", model=model, test_inputs=x, test_labels=y,
                            calibration=x, bits=Bits(weights=8, activations=7),
                            mapping=mapping)
        results[mapping] = simulate(arch, lw, progress=False)
    p, u = results["packed"], results["unified"]
    m = u.layers[0].mapping
    assert m["unified"] and m["weight_bits_stored"] == SIGN_BITS
    assert "unified" not in p.layers[0].mapping
    assert m["crossbars"] == u.layers[0].crossbars < p.layers[0].crossbars
    assert m["conversions_per_vector"] < p.layers[0].mapping["conversions_per_vector"]
    assert m["dense_at_bits_crossbars"] == p.layers[0].mapping["dense_at_bits_crossbars"]
    assert u.events_total["adc_conversions"] < p.events_total["adc_conversions"]
    assert u.events_total["scale_multiplies"] == 6 * m["scale_multiplies_per_vector"] > 0
    assert p.events_total["scale_multiplies"] == 0
    assert u.hardware_accuracy == p.hardware_accuracy
    mapped = map_model(model, arch, QuantRecipe(weight_bits=8, activation_bits=7,
                                                packed=True, unified=True), x)
    hw = mapped.model[0]
    with torch.no_grad():
        out = hw(x)
    ref = map_model(model, arch, QuantRecipe(weight_bits=8, activation_bits=7, packed=True),
                    x).model[0]
    with torch.no_grad():
        torch.testing.assert_close(out, ref(x), rtol=0, atol=0)


def test_isaac_and_cap_ram_price_scale_multiplies_without_a_row(isaac_arch):
    """The optional event needs no components row: priced by the multiplier's model."""
    from pathlib import Path

    from sim.config import load_arch

    cap = load_arch(Path(__file__).resolve().parents[1] / "arch_configs/cap_ram_65nm.yaml")
    for a in (isaac_arch, cap):
        assert a.energy.component_of("scale_multiplies") == "multiplier (model)"
        assert a.energy.pj("scale_multiplies") > 0


def test_compress_writes_unified_mapping_only_when_no_block_is_left_free():
    from mappers.compress.admm import _fully_unified
    from mappers.compress.spec import parse_compression

    model = nn.Sequential(nn.Linear(16, 4))
    base = {"name": "t", "admm": {"epochs": 1}, "finetune": {"epochs": 0},
            "train": {"batch_size": 8, "lr": 0.001, "optimizer": "adam"}}

    def spec(zero, unify):
        return parse_compression({**base, "layers": {"0": {"unify": {
            "block": [8, 1], "zero_fraction": zero, "unify_fraction": unify}}}}, model)

    assert _fully_unified(spec(0.25, 0.75))
    assert not _fully_unified(spec(0.5, 0.3))
