"""The mapping that cashes compression in (issue 10 deliverable 6, mappers/compress/mapping.py).

Oracle: on an exact arch the packed sub-layers' bit-true product (the per-row-group kernel,
not the integer fast path) equals ``x @ W_int`` for every compression method and a composed
one. Savings: a pruned model's crossbars, cell rows and ADC conversions fall by what its mask
predicts, counted here from the mask. The bridge, the record and placement count the same
crossbars.

The tiny arch (tests/conftest.py): 16 x 8 crossbars of 2-bit cells with a unit column, 8-bit
offset weights (4 cell columns each: 2 weights per crossbar), 8-bit signed inputs through a
1-bit DAC (8 steps), a 6-bit ADC holding every partial sum exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from mappers import QuantRecipe, map_model
from mappers.compress.mapping import pack, savings, weights_per_tile
from mappers.compress.projections import (
    BlockStructured,
    Connectivity,
    Pattern,
    Polarize,
    Quantize,
    Structured,
    Unify,
    Unstructured,
    pattern_library,
    project_all,
)
from mappers.quantize import quantize_weights
from sim.engine.placement import layer_geometry, place, storage_arch
from sim.errors import MappingError
from sim.kernels.weights import polarize
from sim.macros import CrossbarLayer

ROWS, STEPS = 16, 8


@pytest.fixture(scope="module")
def arch(make_arch):
    return make_arch(**{"organization.tiles": 64})


def _int_matrix(w: torch.Tensor, bits: int = 8) -> np.ndarray:
    """The crossbar matrix (K, N) of a torch weight, quantized as the bridge does."""
    q, _ = quantize_weights(w, bits)
    return q.reshape(q.shape[0], -1).T.contiguous().numpy()


def _packed_product(arch, w_int, x, **kw):
    """Bit-true product of the packed sub-layers (per-row-group kernel) and their events."""
    packing = pack(w_int, arch, **kw)
    outs, conv = [], 0
    for i, (p, xi) in enumerate(zip(packing.parts, packing.gather(x), strict=True)):
        xb = CrossbarLayer(arch, p.weights, seed=i, exact_fast_path=False)
        y, ev = xb.matmul(xi)
        outs.append(y)
        conv += ev.adc_conversions
    return packing.scatter(outs, x.shape[0]), conv, packing


def _methods():
    """(name, torch weight) of every method, each on its own small layer."""
    g = torch.Generator().manual_seed(0)
    lin = torch.randn(12, 40, generator=g)
    conv = torch.randn(8, 4, 3, 3, generator=g)
    lib = tuple(pattern_library([conv], 4))
    out = {
        "unstructured": project_all([Unstructured(4)], lin),
        "filter": project_all([Structured(2, "filter")], lin),
        "channel": project_all([Structured(2, "channel")], lin),
        "bsp": project_all([BlockStructured((2, 16), column_rate=4, row_rate=2)], lin),
        "unify": project_all([Unify((4, 2), 0.3, 0.3)], lin),
        "polarize": project_all([Polarize(16)], lin),
        "pattern+connectivity": project_all([Pattern(lib), Connectivity(2)], conv),
        "composed": project_all([Unstructured(2), BlockStructured((4, 8), column_rate=2),
                                 Unify((4, 2), 0.2, 0.2), Polarize(8), Quantize(4)], lin),
    }
    return list(out.items())


def test_packing_is_a_partition_of_the_nonzero_weights(arch):
    rng = np.random.default_rng(0)
    for density in (0.05, 0.3, 1.0):
        w = rng.integers(-100, 101, (45, 13)) * (rng.random((45, 13)) < density)
        w[:, 3] = 0
        w[7] = 0
        for reorder in (False, True):
            packing = pack(w, arch, reorder=reorder)
            np.testing.assert_array_equal(packing.dense(), w)
            assert packing.rows_bound <= sum(p.shape[0] for p in packing.parts)
            cells = [(int(r), int(c)) for p in packing.parts
                     for r in p.rows for c in p.cols if w[r, c]]
            assert len(cells) == len(set(cells)) == int((w != 0).sum())
            for p in packing.parts:  # a sub-layer fits one crossbar's rows, no empty column
                assert p.rows.size <= ROWS and (p.weights != 0).any(axis=0).all()
                assert 3 not in p.cols and 7 not in p.rows


@pytest.mark.parametrize("name,weight", _methods(), ids=[n for n, _ in _methods()])
def test_packed_bit_true_product_is_the_integer_product(arch, name, weight):
    """Oracle: packing never changes the arithmetic (the sub-layers run the bit-true
    per-row-group kernel, not the exact fast path)."""
    w_int = _int_matrix(weight)
    x = np.random.default_rng(1).integers(-127, 128, (6, w_int.shape[0]))
    y, conv, packing = _packed_product(arch, w_int, x)
    np.testing.assert_array_equal(y, x @ w_int)
    assert np.array_equal(packing.dense(), w_int)
    if name not in ("unify", "polarize"):  # these zero few or no whole rows/columns
        dense = CrossbarLayer(arch, w_int, exact_fast_path=False).matmul(x)[1]
        assert conv < dense.adc_conversions


def test_per_layer_bits_use_the_slices_they_need_and_stay_exact(arch):
    """4-bit weights stored in 4-bit offset format: 2 cell columns per weight, not 4, so a
    crossbar holds 4 weights; the ADC and shift-and-add still give the integer product."""
    w4 = storage_arch(arch, 4)
    assert weights_per_tile(w4) == 2 * weights_per_tile(arch) == 4
    rng = np.random.default_rng(2)
    w_int = rng.integers(-7, 8, (16, 8))
    w_int[w_int == 0] = 1
    x = rng.integers(-127, 128, (5, 16))
    y8, conv8, p8 = _packed_product(arch, w_int, x)
    y4, conv4, p4 = _packed_product(w4, w_int, x)
    np.testing.assert_array_equal(y4, x @ w_int)
    np.testing.assert_array_equal(y8, y4)
    # 8 weights: 4 crossbars of 2 at 8 bits, 2 of 4 at 4 bits; one row group each.
    assert (len(p8.parts), len(p4.parts)) == (4, 2)
    assert conv8 == 5 * STEPS * 4 * (2 * 4 + 1)
    assert conv4 == 5 * STEPS * 2 * (4 * 2 + 1)
    with pytest.raises(MappingError, match="16-bit weights do not fit the 8-bit"):
        storage_arch(arch, 16)


def _linear(weight: torch.Tensor) -> nn.Module:
    model = nn.Sequential(nn.Linear(weight.shape[1], weight.shape[0], bias=False)).eval()
    with torch.no_grad():
        model[0].weight.copy_(weight)
    return model


def test_pruned_model_saves_exactly_what_its_mask_predicts(arch):
    """Channel and filter pruning of a Linear: 20 of 40 inputs and 7 of 12 outputs kept.
    Crossbars and conversions (counted by the bridge's events) fall by what the mask
    says: K' = 20 rows need ceil(20/16) = 2 row groups, N' = 7 outputs 4 column tiles."""
    rng = np.random.default_rng(3)
    w = torch.from_numpy(rng.uniform(0.2, 1.0, (12, 40)) * rng.choice([-1, 1], (12, 40)))
    keep_in = np.sort(rng.choice(40, 20, replace=False))
    keep_out = np.sort(rng.choice(12, 7, replace=False))
    mask = np.zeros((12, 40), bool)
    mask[np.ix_(keep_out, keep_in)] = True
    model = _linear(w.float() * torch.from_numpy(mask))
    x = torch.randn(5, 40)
    runs = {}
    for packed in (False, True):
        mapped = map_model(model, arch, QuantRecipe(packed=packed), x)
        y = mapped(x)
        rec = mapped.layers[0]
        runs[packed] = (y, rec.crossbars, rec.events.adc_conversions, rec.events.cell_reads,
                        rec.events)
    assert torch.equal(runs[False][0], runs[True][0])  # exact arch: the same outputs
    # From the mask alone: rows kept, outputs kept, per-crossbar weights (16 rows, 2 weights
    # of 4 cell columns + 1 unit column per crossbar).
    k_kept, n_kept = int(mask.any(0).sum()), int(mask.any(1).sum())
    tiles = [min(2, n_kept - t) for t in range(0, n_kept, 2)]
    groups = math.ceil(k_kept / ROWS)
    packed_xbars = groups * len(tiles)
    dense_xbars = math.ceil(40 / ROWS) * math.ceil(12 / 2)
    packed_conv = 5 * STEPS * groups * sum(4 * c + 1 for c in tiles)
    dense_conv = 5 * STEPS * math.ceil(40 / ROWS) * (12 * 4 + 6)
    assert runs[False][1:3] == (dense_xbars, dense_conv)
    assert runs[True][1:3] == (packed_xbars, packed_conv)
    assert dense_xbars - packed_xbars == 18 - 8
    # cell reads: every driven row reads its sub-layer's columns; pruned inputs drive none.
    assert runs[True][3] < runs[False][3]
    # The buffer reads each kept input once and the layer writes each kept output once
    # (8-bit inputs, 16-bit outputs); the MACs are the layer's K x N product either way.
    dense_ev, packed_ev = runs[False][4], runs[True][4]
    assert packed_ev.input_buffer_read_bits == 5 * k_kept * 8
    assert dense_ev.input_buffer_read_bits == 5 * 40 * 8
    assert packed_ev.output_buffer_write_bits == 5 * n_kept * 16
    assert packed_ev.macs == dense_ev.macs == 5 * 40 * 12


def _pattern_conv():
    """8 filters x 4 channels of 3x3: even filters use pattern A, odd ones pattern B in every
    channel (alternating, so the natural order mixes them); filters 0 and 2 lose channel 3
    (connectivity pruning)."""
    a = np.zeros(9, bool)
    a[[1, 3, 4, 5]] = True
    b = np.zeros(9, bool)
    b[[0, 2, 4, 8]] = True
    rng = np.random.default_rng(4)
    w = rng.uniform(0.3, 1.0, (8, 4, 9)) * rng.choice([-1, 1], (8, 4, 9))
    for f in range(8):
        w[f] *= (a if f % 2 == 0 else b)
    w[[0, 2], 3] = 0
    return torch.from_numpy(w.reshape(8, 4, 3, 3)).float()


def test_pattern_aware_packing_groups_filters_by_pattern(arch):
    """PatDNN: filters of one pattern share a crossbar, so each channel needs its pattern's 4
    rows, not the 9 of the kernel (nor the 6 of two patterns' union); the kernels removed by
    connectivity pruning free their rows. Expected rows: filters grouped by identical row
    support, 2 per crossbar, each group costing its support."""
    w = _pattern_conv()
    w_int = _int_matrix(w)
    support = {}
    for f in range(8):
        support.setdefault(tuple(np.flatnonzero(w_int[:, f])), []).append(f)
    assert all(len(fs) % 2 == 0 for fs in support.values())
    expected_rows = sum(len(s) * len(fs) // 2 for s, fs in support.items())
    assert expected_rows == 3 * 16 + 12  # 4 channels x 4 rows; 3 x 4 without channel 3
    clustered = pack(w_int, arch)
    natural = pack(w_int, arch, reorder=False)
    assert clustered.order == "clustered"
    rows = sum(p.shape[0] for p in clustered.parts)
    assert rows == expected_rows == clustered.rows_bound  # the clustering meets the bound
    assert sum(p.shape[0] for p in natural.parts) > rows
    fig = savings(arch, 36, 8, clustered.shapes, None)
    assert fig["dense_rows_mapped"] == 36 * 4 and fig["rows_mapped"] == expected_rows
    # Bounds: patterns alone keep 4 of 9 rows per tile (64); connectivity frees 4 more.
    assert fig["rows_mapped"] == 4 * 4 * 4 - 4
    assert (fig["dense_crossbars"], fig["crossbars"]) == (3 * 4, 4)
    x = np.random.default_rng(5).integers(-127, 128, (4, 36))
    np.testing.assert_array_equal(_packed_product(arch, w_int, x)[0], x @ w_int)


def test_bsp_empty_blocks_and_pruned_rows_cost_no_crossbar(arch):
    """RTMobile BSP with blocks of 2 outputs x 16 inputs (one crossbar: 16 rows, 2 weights):
    each block keeps 4 inputs and 1 output; one block row is pruned empty. Crossbars per
    column tile = ceil(rows nonzero in the tile / 16); a crossbar maps only its block's
    outputs (conversions), counted here from the mask."""
    g = torch.Generator().manual_seed(6)
    w = project_all([BlockStructured((2, 16), column_rate=4, row_rate=2)],
                    torch.randn(8, 64, generator=g))
    w[0:2, 16:32] = 0  # an empty block
    w_int = _int_matrix(w)
    packing = pack(w_int, arch, reorder=False)
    nz = w_int != 0
    live = np.flatnonzero(nz.any(axis=0))  # outputs pruned in every block are dropped
    xbars = conv_cols = 0
    for t in range(0, live.size, 2):
        cols = live[t:t + 2]
        rows = np.flatnonzero(nz[:, cols].any(axis=1))
        xbars += math.ceil(rows.size / ROWS)
        for c in range(0, rows.size, ROWS):
            conv_cols += 4 * int(nz[np.ix_(rows[c:c + ROWS], cols)].any(0).sum()) + 1
    assert len(packing.parts) == xbars < 4 * 4
    fig = savings(arch, 64, 8, packing.shapes, None)
    assert fig["crossbars"] == xbars and fig["conversions_per_vector"] == STEPS * conv_cols
    assert fig["dense_conversions_per_vector"] == STEPS * 4 * (8 * 4 + 4)
    x = np.random.default_rng(7).integers(-127, 128, (3, 64))
    np.testing.assert_array_equal(_packed_product(arch, w_int, x)[0], x @ w_int)


@pytest.fixture(scope="module")
def polar_arch(make_arch):
    """Polarized 7-bit weights (6 magnitude bits: 3 cells) in fragments of 4 rows."""
    return make_arch(**{"organization.tiles": 64, "weights.encoding": "polarized",
                        "weights.bits": 7, "crossbar.fragment_rows": 4})


def test_packing_keeps_polarized_fragments(polar_arch):
    """Polarized encoding: packed fragments keep one sign per column. Row-level compaction is
    used where it keeps them; else sign-aware fragments padded with empty rows (index K) or
    whole original row groups, whichever maps fewer rows; unpolarized weights are refused
    with a message."""
    w = np.zeros((8, 2), np.int64)
    w[0, 0], w[4, 0], w[1, 1] = 5, -3, 2  # rows 0 and 4 in one fragment would mix signs
    packing = pack(w, polar_arch)
    assert [p.rows.tolist() for p in packing.parts] == [[0, 1, 8, 8, 4]]  # 8: padding
    x = np.arange(1, 9).reshape(1, 8)
    assert packing.gather(x)[0].tolist() == [[1, 2, 0, 0, 5]]
    np.testing.assert_array_equal(packing.dense(), w)
    w[4, 0] = 3  # now one sign: rows 0, 1 and 4 pack into one fragment
    assert [p.rows.tolist() for p in pack(w, polar_arch).parts] == [[0, 1, 4]]

    rng = np.random.default_rng(8)
    dense = polarize(rng.integers(-60, 61, (40, 6)), 4)
    dense[rng.random(dense.shape) < 0.6] = 0
    dense[8:16] = 0
    x = rng.integers(-127, 128, (4, 40))
    y, _, packing = _packed_product(polar_arch, dense, x)  # CrossbarLayer checks polarity
    np.testing.assert_array_equal(y, x @ dense)
    assert sum(p.shape[0] for p in packing.parts) < 40 * 3
    mixed = np.zeros((8, 1), np.int64)
    mixed[[0, 1], 0] = [4, -4]
    with pytest.raises(MappingError, match="not sign-polarized in fragments of 4 rows"):
        pack(mixed, polar_arch, name="fc")


def test_polarized_model_maps_packed_on_a_polarized_arch(polar_arch):
    """A compressed (pruned + polarized) Linear on the polarized-encoding arch: the bridge's
    packed mapping gives the dense mapping's outputs with fewer crossbars."""
    g = torch.Generator().manual_seed(9)
    w = project_all([Structured(2, "channel"), Unstructured(2), Polarize(4)],
                    torch.randn(6, 40, generator=g))
    model = _linear(w)
    x = torch.randn(3, 40)
    dense = map_model(model, polar_arch, QuantRecipe(weight_bits=7), x)
    packed = map_model(model, polar_arch, QuantRecipe(weight_bits=7, packed=True), x)
    assert torch.equal(dense(x), packed(x))
    assert packed.layers[0].crossbars < dense.layers[0].crossbars


@pytest.mark.parametrize("bits", [8, 4])
def test_bridge_record_and_placement_count_the_same_packed_crossbars(arch, bits):
    """A pattern-pruned conv through the bridge: outputs as the dense mapping (exact arch),
    crossbars equal in the CrossbarLayers, the record, layer_geometry and place, and the
    layer stored at its own bits."""
    w = _pattern_conv()
    model = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1, bias=False)).eval()
    with torch.no_grad():
        model[0].weight.copy_(w)
    x = torch.randn(2, 4, 5, 5)
    recipe = QuantRecipe(weight_bits=8, layer_weight_bits=(("0", bits),), packed=True)
    packed = map_model(model, arch, recipe, x)
    dense = map_model(model, arch, QuantRecipe(weight_bits=bits), x)
    assert torch.equal(packed(x), dense(x))
    hw = packed.model[0]
    (shape,) = packed.layer_shapes()
    functional = sum(xb.crossbars for xb in hw.crossbar_layers)
    assert shape.parts == hw.packing.shapes and shape.weight_bits == bits
    assert functional == packed.layers[0].crossbars == layer_geometry(arch, shape).crossbars
    assert place(arch, [shape], duplicate=False)[0].crossbars == functional
    assert functional < dense.layers[0].crossbars
    assert all(xb.arch.weights.bits == bits for xb in hw.crossbar_layers)
    fig = savings(arch, shape.k, shape.n, shape.parts, bits)
    assert fig["crossbars"] == functional and fig["weight_bits_stored"] == bits
    assert (fig["dense_at_bits_crossbars"] < fig["dense_crossbars"]) == (bits < 8)


def test_per_layer_bits_must_name_a_layer_and_fit_the_arch(arch):
    model = _linear(torch.randn(4, 8))
    x = torch.randn(2, 8)
    with pytest.raises(MappingError, match="weights_per_layer names fc9"):
        map_model(model, arch, QuantRecipe(layer_weight_bits=(("fc9", 4),)), x)
    with pytest.raises(MappingError, match=r"weights_per_layer\.0: 12-bit weights"):
        map_model(model, arch, QuantRecipe(layer_weight_bits=(("0", 12),)), x)


def test_workload_yaml_takes_per_layer_bits_and_mapping():
    from sim.errors import ConfigError
    from workloads.spec import parse_workload

    base = {"name": "w", "model": "digits_cnn", "dataset": "digits",
            "bits": {"weights": 8, "activations": 8}}
    wl = parse_workload({**base, "mapping": "packed",
                         "bits": {**base["bits"], "weights_per_layer": {"conv1": 4}}})
    assert wl.mapping == "packed" and wl.bits.weights_per_layer == {"conv1": 4}
    assert parse_workload(base).mapping == "dense"
    with pytest.raises(ConfigError) as err:
        parse_workload({**base, "mapping": "sparse",
                        "bits": {**base["bits"], "weights_per_layer": {"conv1": 40}}})
    text = str(err.value)
    assert "mapping" in text and "bits.weights_per_layer.conv1" in text


def test_run_reports_per_layer_savings_and_places_fewer_crossbars(arch):
    """``simulate`` on a packed workload: per-layer dense vs packed figures in the result and
    the printed summary, fewer crossbars placed; the analytical mode maps it too."""
    from analysis.run import LoadedWorkload, estimate, format_result, simulate
    from workloads.spec import Bits

    g = torch.Generator().manual_seed(10)
    model = nn.Sequential(
        nn.Linear(40, 12), nn.ReLU(), nn.Linear(12, 4)).eval()
    with torch.no_grad():
        model[0].weight.copy_(project_all([Structured(2, "channel"), Unstructured(2)],
                                          model[0].weight))
    x = torch.randn(6, 40, generator=g)
    y = torch.randint(0, 4, (6,), generator=g)
    results = {}
    for mapping in ("dense", "packed"):
        lw = LoadedWorkload(name="t", model=model, test_inputs=x, test_labels=y,
                            calibration=x, bits=Bits(weights=8, activations=7),
                            mapping=mapping)
        results[mapping] = simulate(arch, lw, progress=False)
    d, p = results["dense"], results["packed"]
    first = p.layers[0].mapping
    assert first["crossbars"] == p.layers[0].crossbars < first["dense_crossbars"]
    assert first["dense_crossbars"] == d.layers[0].crossbars
    assert first["dense_at_bits_crossbars"] == first["dense_crossbars"]  # 8-bit on 8-bit
    assert first["rows_lower_bound"] <= first["rows_mapped"] < first["dense_rows_mapped"]
    assert not d.layers[0].mapping
    assert p.events_total["adc_conversions"] < d.events_total["adc_conversions"]
    assert p.hardware_accuracy == d.hardware_accuracy
    assert "packed layer" in format_result(p) and "packed layer" not in format_result(d)
    lw = LoadedWorkload(name="t", model=model, test_inputs=x, test_labels=y, calibration=x,
                        bits=Bits(weights=8, activations=7), mapping="packed")
    est = estimate(arch, lw, samples=6)
    assert est.events_total["adc_conversions"] == p.events_total["adc_conversions"]


def test_zero_skip_step_activity_sees_the_busiest_crossbar_of_every_sub_layer(make_arch):
    """With zero-skip the schedule's ``hist_max`` of a packed layer is the busiest crossbar
    of all its sub-layers per (vector, step): checked against StepActivity.from_active over
    every sub-layer's row groups (each padded to whole crossbars)."""
    from sim.kernels.inputs import input_activity
    from sim.macros.activity import StepActivity

    arch = make_arch(**{"organization.tiles": 64, "inputs.zero_skip": True,
                        "crossbar.fragment_rows": 4, "weights.encoding": "polarized",
                        "weights.bits": 7})
    rng = np.random.default_rng(11)
    w = polarize(rng.integers(-60, 61, (12, 40)).T, 4).T  # torch (out, in) view
    w[:, 20:] *= rng.random((12, 20)) < 0.2  # sparse second half: small sub-layers
    model = _linear(torch.from_numpy(w).float())
    x = torch.relu(torch.randn(7, 40, generator=torch.Generator().manual_seed(3))) - 0.3
    mapped = map_model(model, arch, QuantRecipe(weight_bits=7, packed=True), x)
    mapped(x)
    hw = mapped.model[0]
    assert len({xb.groups for xb in hw.crossbar_layers}) > 1
    mats, _ = hw.hw_inputs(x)
    inp = arch.inputs
    blocks = []
    for xb, mat in zip(hw.crossbar_layers, mats, strict=True):
        active, _ = input_activity(mat.numpy(), inp.bits, 1, inp.signed, 4, xb.groups)
        pad = -xb.groups % 4
        blocks.append(np.concatenate([active, np.zeros((pad, *active.shape[1:]), bool)]))
    oracle = StepActivity.from_active(np.concatenate(blocks).transpose(2, 1, 0), 4)
    got = mapped.layers[0].events.activity
    np.testing.assert_array_equal(got.hist_max, oracle.hist_max)


def test_rows_are_clustered_so_each_crossbar_converts_fewer_columns(arch):
    """A tile whose rows alternate between its two outputs: in natural order both 16-row
    crossbars hold both outputs; clustered, each holds one, so each converts 4 + 1 columns
    instead of 2 x 4 + 1 (8 steps, one row group each)."""
    w = np.zeros((32, 2), np.int64)
    w[0::2, 0] = np.arange(1, 17)
    w[1::2, 1] = -np.arange(1, 17)
    natural = pack(w, arch, reorder=False)
    clustered = pack(w, arch)
    assert [p.shape for p in natural.parts] == [(16, 2), (16, 2)]
    assert sorted(p.shape for p in clustered.parts) == [(16, 1), (16, 1)]
    x = np.random.default_rng(12).integers(-127, 128, (3, 32))
    y, conv, _ = _packed_product(arch, w, x)
    np.testing.assert_array_equal(y, x @ w)
    assert conv == 3 * STEPS * 2 * (4 + 1)
    assert _packed_product(arch, w, x, reorder=False)[1] == 3 * STEPS * 2 * (2 * 4 + 1)
