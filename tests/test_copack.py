"""Small packed sub-layers share arrays (sim.engine.placement.copack).

Counting: a layer's arrays fall from one per sub-layer to what first-fit of its
``(rows, columns)`` rectangles predicts, computed here by hand; a layer-by-layer family
(CAP-RAM) also lets different layers share a weight group, a pipelining one (ReRAM) does not.
Oracle: co-packing changes no output (bit-true product == integer product), and the bridge,
the record, ``layer_geometry`` and ``place`` count the same arrays.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mappers import QuantRecipe, map_model
from mappers.compress.mapping import pack
from sim.engine.placement import (
    LayerShape,
    array_rect,
    arrays_in_use,
    copack,
    layer_geometry,
    packed_arrays,
    place,
)
from sim.errors import MappingError
from tests.test_capram import capram


def test_rectangles_predict_the_arrays(make_arch):
    """Tiny arch: 16 rows x 8 data columns, 8-bit weights in 4 cell columns (2 per array).
    Sub-layers (5,1) (6,1) (16,2) (3,1) (20,1) are rectangles 5x4, 6x4, 16x8, 3x4 and one
    needing 2 arrays of its own. First fit by decreasing rows: [16x8], [6x4 + 5x4 = 11x8],
    [3x4] -> 3 shared arrays + 2 own = 5, against 6 with one array per sub-layer."""
    arch = make_arch()
    parts = ((5, 1), (6, 1), (16, 2), (3, 1), (20, 1))
    assert [array_rect(arch, k, n) for k, n in parts] == [(5, 4), (6, 4), (16, 8), (3, 4),
                                                           None]
    assert copack(arch, [(5, 4), (6, 4), (16, 8), (3, 4)]) == [[2], [1, 0], [3]]
    arrays, shared = packed_arrays(arch, parts)
    assert (arrays, shared) == (5, ((16, 8), (11, 8), (3, 4)))
    shape = LayerShape(name="l", k=50, n=6, vectors=1, parts=parts)
    assert layer_geometry(arch, shape).crossbars == 5
    assert place(arch, [shape], duplicate=False)[0].crossbars == 5
    # Moving the cause: a wider (6,2) block (6x8) and a taller (12,1) one (12x4): first fit
    # [16x8], [12x4], [6x8], [5x4] (5 rows no longer fit beside 12, 4 columns beside 8).
    assert packed_arrays(arch, ((5, 1), (6, 2), (16, 2), (12, 1), (20, 1)))[0] == 6


def _block_linear(seed=0):
    """A Linear (out 4, in 40): outputs 0 and 2 use 16 inputs each, 1 and 3 four each, so
    pack() cuts each 2-weight column tile into a 16 x 1 and a 4 x 1 sub-layer; the two
    4 x 1 (4 x 4 cells) share one array."""
    rng = np.random.default_rng(seed)
    w = np.zeros((4, 40))
    for o, (a, b) in enumerate([(0, 16), (16, 20), (20, 36), (36, 40)]):
        w[o, a:b] = rng.uniform(0.2, 1.0, b - a) * rng.choice([-1, 1], b - a)
    model = nn.Sequential(nn.Linear(40, 4, bias=False)).eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.from_numpy(w).float())
    return model


def test_copacked_layer_is_exact_and_counted_alike(make_arch):
    """Bit-true output of the co-packed layer equals the dense mapping's (exact arch: the
    integer product); the record, layer_geometry and place count the shared arrays, fewer
    than one per sub-layer."""
    arch = make_arch(**{"organization.tiles": 64})
    model = _block_linear()
    x = torch.randn(4, 40)
    packed = map_model(model, arch, QuantRecipe(packed=True), x)
    dense = map_model(model, arch, QuantRecipe(), x)
    assert torch.equal(packed(x), dense(x))
    hw = packed.model[0]
    (shape,) = packed.layer_shapes()
    per_part = sum(xb.crossbars for xb in hw.crossbar_layers)
    rects = [array_rect(arch, k, n) for k, n in shape.parts]
    predicted = len(copack(arch, rects)) if None not in rects else None
    assert predicted is not None and predicted < per_part
    assert (predicted, per_part) == (3, 4)
    assert packed.layers[0].crossbars == layer_geometry(arch, shape).crossbars == predicted
    assert place(arch, [shape], duplicate=False)[0].crossbars == predicted
    # Events are each sub-layer's own: only its rows driven, its columns converted.
    assert (packed.layers[0].events.adc_conversions
            < dense.layers[0].events.adc_conversions)


def test_capram_layers_share_weight_groups_but_reram_layers_do_not(make_arch):
    """Nine layers of one small sub-layer each (4-bit weights: 20 rows x 1 weight = 20 x 4
    cells of a 64 x 128 group): CAP-RAM runs layer by layer, so different layers need only
    disjoint cells (strips): three stack in a 4-column strip (rows 60 of 64), the three
    strips stand side by side -> 1 group of its 8; one per layer would need 9 and not fit.
    The tiny ReRAM arch pipelines its layers: each keeps its own crossbar."""
    cap = capram()
    layers = [LayerShape(name=f"l{i}", k=20, n=1, vectors=1, parts=((20, 1),), weight_bits=4)
              for i in range(9)]
    assert all(layer_geometry(cap, ly).crossbars == 1 for ly in layers)
    placed = place(cap, layers)
    assert len(placed) == 9 and all(p.last_tile == 0 for p in placed)
    assert arrays_in_use(cap, placed) == 1  # the schedule's crossbars_used
    big = [LayerShape(name=f"big{i}", k=128, n=32, vectors=1, parts=((64, 32), (64, 32)),
                      weight_bits=4) for i in range(4)]
    assert arrays_in_use(cap, place(cap, layers + big[:3])) == 7  # 1 shared + 3 x 2 whole
    with np.testing.assert_raises(MappingError) as info:
        place(cap, layers + big)
    # 1 shared group + 4 x 2 whole groups = 9 > 8
    assert "needs 9 weight groups" in str(info.exception)
    reram = make_arch(**{"organization.tiles": 64})
    small = [LayerShape(name=f"l{i}", k=3, n=1, vectors=1, parts=((3, 1),)) for i in range(4)]
    assert sum(p.crossbars for p in place(reram, small, duplicate=False)) == 4


def test_strips_share_rows_or_columns_across_layers_only():
    """copack(strips=True) on CAP-RAM's 64 x 128 groups, by hand. Rectangles 64x64, 64x64,
    30x32, 30x32, 10x32 of five layers: the two 64-wide ones stand side by side (sharing all
    rows), the 32-wide ones open a strip in a second group where 30 + 30 rows stack (sharing
    columns) and the 10-row one needs a second strip: [[0, 1], [2, 3, 4]]. Block-diagonal
    (the default: disjoint rows AND columns) needs 4 groups. When the first two belong to
    one layer (keep_apart) they are never in one group, and the rest fill the first."""
    cap = capram()
    rects = [(64, 64), (64, 64), (30, 32), (30, 32), (10, 32)]
    assert copack(cap, rects, keep_apart=[0, 1, 2, 3, 4], strips=True) == [[0, 1], [2, 3, 4]]
    assert copack(cap, rects) == [[0], [1], [2, 3], [4]]
    assert copack(cap, rects, keep_apart=[0, 0, 1, 2, 3], strips=True) == [[0, 2, 3, 4], [1]]
    # a narrower block stacks in a wider strip while the rows allow (30 + 30 <= 64) ...
    assert copack(cap, [(30, 32), (30, 40)], strips=True) == [[1, 0]]
    # ... else it opens a strip beside it if the columns allow (100 + 40 > 128: no)
    assert copack(cap, [(40, 100), (30, 40)], strips=True) == [[0], [1]]
    assert copack(cap, [(40, 88), (30, 40)], strips=True) == [[0, 1]]


def test_pack_then_copack_on_capram_is_exact():
    """The CAP-RAM layer (its own family layer, not the ReRAM one) runs packed sub-layers,
    and their outputs sum to the integer product."""
    cap = capram(**{"weights.bits": 4})
    rng = np.random.default_rng(2)
    w = np.zeros((100, 40), np.int64)  # 4-bit: column tiles of 32 weights, 64 MAC rows
    nz = (rng.integers(1, 8, (100, 40)) * rng.choice([-1, 1], (100, 40)))
    w[:64, :32] = nz[:64, :32]         # tile 0, chunk 0: a whole group (64 x 32)
    w[64:74, :4] = nz[64:74, :4]       # tile 0, chunk 1: 10 rows x 4 weights (10 x 16 cells)
    w[:10, 32:40] = nz[:10, 32:40]     # tile 1: 10 rows x 8 weights (10 x 32 cells)
    packing = pack(w, cap, name="t")
    x = rng.integers(0, 256, (5, 100))
    from sim.macros.family import make_layer

    outs = []
    for i, (p, xi) in enumerate(zip(packing.parts, packing.gather(x), strict=True)):
        layer = make_layer(cap, p.weights, seed=i, exact_fast_path=False)
        assert type(layer).__name__ == "CapRamLayer"
        outs.append(layer.matmul(xi)[0])
    assert np.array_equal(np.rint(packing.scatter(outs, 5)), x @ w)
    assert packed_arrays(cap, packing.shapes)[0] == 2 < len(packing.parts) == 3
