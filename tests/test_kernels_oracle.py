"""Kernels against slow, obviously correct pure-Python oracles written here.

The oracles loop over rows, steps, bits and columns and read binary digits from strings; they
share no code with ``sim.kernels``. Covered: inputs into DAC steps, row-group activity, the
four weight encodings, ISAAC column flipping, SAR ADC thresholds (by simulating the successive
approximation bit by bit), ``convert``, and the whole ``CrossbarLayer.matmul`` against a loop
model of the same physics, ideal and non-ideal.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.config.schema import Cell, WeightFormat, adc_full_scale, columns_per_weight
from sim.kernels import adc as adc_k
from sim.kernels import inputs as inputs_k
from sim.kernels import weights as weights_k
from sim.macros.crossbar import CrossbarLayer

#: Every test here runs on each array backend of this machine, with and without the exact
#: fast path (the ``array_backend`` fixture of conftest.py).
pytestmark = pytest.mark.usefixtures("array_backend")

#: Float results of the layer and of the loop model may differ only by the order of float64
#: additions (a few ulps per term); 1e-9 of the largest output is far above that and far below
#: one ADC step.
REL = 1e-9

# ----------------------------------------------------------------------------- oracles


def digits(value: int, n_bits: int) -> list[int]:
    """The ``n_bits`` low binary digits of ``value`` (two's complement), LSB first."""
    text = format(value % (1 << n_bits), f"0{n_bits}b") if n_bits else ""
    return [int(ch) for ch in reversed(text)]


def from_digits(bits: list[int]) -> int:
    """Unsigned integer of binary digits, LSB first."""
    total = 0
    for i, b in enumerate(bits):
        total += b * 2**i
    return total


def oracle_split(x, bits, dac_bits, signed):
    """DAC steps ``[p][m][k]`` and step weights of integer inputs (nested lists)."""
    mag = bits - 1 if signed else bits
    n_mag = math.ceil(mag / dac_bits)
    weights = [2 ** (dac_bits * p) for p in range(n_mag)] + ([-(2 ** (bits - 1))] if signed
                                                               else [])
    steps = [[[0] * len(x[0]) for _ in x] for _ in weights]
    for m, row in enumerate(x):
        for k, v in enumerate(row):
            d = digits(int(v), bits)
            for p in range(n_mag):
                steps[p][m][k] = from_digits(d[p * dac_bits: min(mag, (p + 1) * dac_bits)])
            if signed:
                steps[n_mag][m][k] = d[bits - 1]
    return steps, weights


def oracle_encode(w, bits, cell_bits, encoding, group_rows):
    """Cell levels ``[k][j]``, column weights ``[g][j]`` (fragment sign included) and bias.

    Differential and polarized weights must lie in the symmetric range (their ``bits - 1``
    magnitude bits cannot hold ``2**(bits-1)``).
    """
    k_count, n_count = len(w), len(w[0])
    g_count = math.ceil(k_count / group_rows)
    mag = bits if encoding == "offset" else bits - 1
    s = mag // cell_bits
    slice_w = [2 ** (cell_bits * i) for i in range(s)]

    def cells(u):  # unsigned magnitude -> s cell levels, LSB slice first
        d = digits(u, mag)
        assert from_digits(d) == u, "magnitude does not fit the cells"
        return [from_digits(d[i * cell_bits:(i + 1) * cell_bits]) for i in range(s)]

    if encoding == "offset":
        per_w, bias = slice_w, -(2 ** (bits - 1))
    elif encoding == "differential":
        per_w, bias = slice_w + [-x for x in slice_w], 0
    elif encoding == "twos_complement":
        per_w, bias = slice_w + [-(2 ** (bits - 1))], 0
    else:
        per_w, bias = slice_w, 0
    per = len(per_w)
    levels = [[0] * (n_count * per) for _ in range(k_count)]
    for k in range(k_count):
        for n in range(n_count):
            v = int(w[k][n])
            if encoding == "offset":
                lv = cells(v + 2 ** (bits - 1))
            elif encoding == "differential":
                lv = cells(max(v, 0)) + cells(max(-v, 0))
            elif encoding == "twos_complement":
                d = digits(v, bits)
                lv = cells(from_digits(d[:bits - 1])) + [d[bits - 1]]
            else:
                lv = cells(abs(v))
            levels[k][n * per:(n + 1) * per] = lv
    col_w = [[0.0] * (n_count * per) for _ in range(g_count)]
    for g in range(g_count):
        for n in range(n_count):
            sign = 1
            if encoding == "polarized":
                rows = [int(w[k][n]) for k in range(g * group_rows,
                                                    min(k_count, (g + 1) * group_rows))]
                assert not (any(v > 0 for v in rows) and any(v < 0 for v in rows))
                sign = -1 if any(v < 0 for v in rows) else 1
            for i in range(per):
                col_w[g][n * per + i] = float(sign * per_w[i])
    return levels, col_w, float(bias)


def oracle_flip(levels, group_rows, top):
    """ISAAC flipping: per (row group, column) flip when the level sum exceeds half its max."""
    k_count, j_count = len(levels), len(levels[0])
    out = [row[:] for row in levels]
    flips = []
    for g in range(math.ceil(k_count / group_rows)):
        rows = range(g * group_rows, min(k_count, (g + 1) * group_rows))
        flags = []
        for j in range(j_count):
            total = sum(levels[k][j] for k in rows)
            flag = 2 * total > len(rows) * top
            if flag:
                for k in rows:
                    out[k][j] = top - levels[k][j]
            flags.append(flag)
        flips.append(flags)
    return out, flips


def sar_convert(u, bit_weights, half):
    """Successive approximation, MSB first: keep bit ``i`` when ``u >= acc + W_i - half``."""
    acc = 0.0
    code = 0
    for i in reversed(range(len(bit_weights))):
        if u >= acc + bit_weights[i] - half:
            acc += bit_weights[i]
            code += 2**i
    return code


def oracle_code(u, thresholds, codes, half):
    """ADC code: count of thresholds <= u (a table), or floor(u + half) clipped."""
    if thresholds is not None:
        return sum(1 for t in thresholds if t <= u)
    return min(max(math.floor(u + half), 0), codes - 1)


def reference_matmul(layer, arch, w, x):
    """Loop model of the crossbar physics: the layer's drawn conductances and ADC curves, the
    rest (encoding, flips, tiling, ADC instance of each column) derived here."""
    xb, wf, inp, adc = arch.crossbar, arch.weights, arch.inputs, arch.crossbar.adc
    k_count, n_count = len(w), len(w[0])
    r = xb.group_rows
    top = 2**xb.cell.bits - 1
    levels, col_w, bias = oracle_encode(w, wf.bits, xb.cell.bits, wf.encoding, r)
    j_count = len(levels[0])
    per = j_count // n_count
    if wf.column_flip:
        levels, flips = oracle_flip(levels, r, top)
    else:
        flips = [[False] * j_count for _ in range(math.ceil(k_count / r))]
    tiles = math.ceil(j_count / xb.columns)
    n_cols = j_count + (tiles if xb.unit_column else 0)

    def unit_of(j):  # the unit column of data column j's crossbar
        return j_count + j // xb.columns

    groups_per_tile = xb.rows // r
    a = adc.per_crossbar

    def instance(g, c):
        tile, pos = (c // xb.columns, c % xb.columns) if c < j_count else (c - j_count,
                                                                           xb.columns)
        return ((g // groups_per_tile) * tiles + tile) * a + pos % a

    steps, step_w = oracle_split(x, inp.bits, xb.dac.bits, inp.signed)
    half = 0.5 if adc.rounding == "nearest" else 0.0
    table = layer.adc_thresholds if layer.adc_thresholds.shape[0] else None
    out = [[0.0] * n_count for _ in x]
    for g in range(len(flips)):
        rows = range(g * r, min(k_count, (g + 1) * r))
        for m in range(len(x)):
            for p in range(len(step_w)):
                if inp.zero_skip and all(steps[p][m][k] == 0 for k in rows):
                    continue
                v = []
                for c in range(n_cols):
                    psum = 0.0
                    for k in rows:
                        psum += steps[p][m][k] * float(layer.conductance[k, c])
                    u = psum * layer.lin_a[g, c] + layer.lin_b[g, c]
                    thr = None if table is None else list(table[instance(g, c)])
                    v.append(oracle_code(u, thr, adc.codes, half) * layer.step[g, c])
                for n in range(n_count):
                    total = 0.0
                    for j in range(n * per, (n + 1) * per):
                        val = v[j]
                        if flips[g][j]:
                            val = top * v[unit_of(j)] - val
                        total += col_w[g][j] * val
                    if bias:
                        total += bias * v[unit_of(n * per)]
                    out[m][n] += step_w[p] * total
    return np.array(out)


def symmetric_range(bits, encoding):
    """Weights each encoding can hold (the most negative one is rejected by two of them)."""
    lo, hi = weights_k.weight_range(bits)
    return (lo + 1 if encoding in ("differential", "polarized") else lo), hi


# ----------------------------------------------------------------------------- inputs


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("bits", [1, 2, 3, 5, 8])
def test_split_inputs_matches_oracle(bits, signed):
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    x = np.arange(lo, hi + 1, dtype=np.int64).reshape(1, -1)  # every representable value
    x = np.concatenate([x, x[:, ::-1]])                        # two samples
    for dac_bits in range(1, bits + 1):
        pad = x.shape[1] + 3
        got = inputs_k.split_inputs(x, bits, dac_bits, signed, rows_padded=pad)
        steps, weights = oracle_split(x.tolist(), bits, dac_bits, signed)
        assert got.dtype == np.uint8
        assert got.shape == (len(weights), 2, pad)
        assert got[:, :, :x.shape[1]].tolist() == steps
        assert not got[:, :, x.shape[1]:].any()  # padding rows are never driven
        assert inputs_k.step_weights(bits, dac_bits, signed).tolist() == weights
        assert got.max() < 2**dac_bits
        # the steps put back together give the input again
        recon = sum(weights[p] * got[p].astype(np.int64) for p in range(len(weights)))
        assert np.array_equal(recon[:, :x.shape[1]], x)


@pytest.mark.parametrize(("x", "bits", "signed"), [
    ([[8]], 3, False), ([[-1]], 3, False), ([[4]], 3, True), ([[-5]], 3, True),
])
def test_split_inputs_rejects_out_of_range(x, bits, signed):
    with pytest.raises(ValueError, match="outside the"):
        inputs_k.split_inputs(np.array(x), bits, 1, signed)


@pytest.mark.parametrize("group_rows", [1, 3, 4, 12])
def test_group_activity_matches_oracle(group_rows):
    rng = np.random.default_rng(group_rows)
    steps = rng.integers(0, 4, size=(5, 6, 12), dtype=np.uint8)
    steps[rng.random(steps.shape) < 0.6] = 0   # sparse, so some groups are idle
    steps[:, 2] = 0                             # a sample with no input at all
    active, nnz = inputs_k.group_activity(steps, group_rows)
    g_count = 12 // group_rows
    assert active.shape == nnz.shape == (g_count, 5, 6)
    for g in range(g_count):
        for p in range(5):
            for m in range(6):
                count = 0
                for k in range(g * group_rows, (g + 1) * group_rows):
                    if steps[p, m, k] != 0:
                        count += 1
                assert nnz[g, p, m] == count
                assert active[g, p, m] == (count > 0)
    assert not active[:, :, 2].any()


def test_group_activity_needs_whole_groups():
    with pytest.raises(ValueError, match="multiple of group_rows"):
        inputs_k.group_activity(np.zeros((1, 1, 10), np.uint8), 4)


# ----------------------------------------------------------------------------- weights

ENCODING_CASES = [  # (encoding, weight bits, cell bits): every whole-cell combination <= 9 bits
    (enc, b, c)
    for enc in ("offset", "differential", "twos_complement", "polarized")
    for c in (1, 2, 3, 4)
    for b in range(2, 10)
    if (b if enc == "offset" else b - 1) % c == 0 and (b if enc == "offset" else b - 1) > 0
]


@pytest.mark.parametrize(("encoding", "bits", "cell_bits"), ENCODING_CASES)
def test_encode_weights_matches_oracle_and_reconstructs(encoding, bits, cell_bits):
    lo, hi = symmetric_range(bits, encoding)
    values = np.arange(lo, hi + 1)
    rows = 3
    # every value in its own column; each column repeats it down the rows (polarized)
    w = np.tile(values, (rows, 1))
    levels, col_out, col_weight, bias, sign = weights_k.encode_weights(
        w, bits, cell_bits, encoding, group_rows=rows)
    o_levels, o_col_w, o_bias = oracle_encode(w.tolist(), bits, cell_bits, encoding, rows)
    per = len(o_levels[0]) // len(values)
    assert levels.dtype == np.uint8
    assert levels.tolist() == o_levels
    assert bias == o_bias
    assert col_out.tolist() == [n for n in range(len(values)) for _ in range(per)]
    signed_w = col_weight * (sign[0, col_out] if sign is not None else 1)
    assert signed_w.tolist() == o_col_w[0]
    assert int(levels.max()) < 2**cell_bits
    # reconstruct each weight from its cells, column weights and the bias
    for k in range(rows):
        for n, value in enumerate(values):
            total = bias
            for j in range(n * per, (n + 1) * per):
                total += signed_w[j] * int(levels[k, j])
            assert total == value
    # the column count agrees with the schema's accounting
    assert per == columns_per_weight(WeightFormat(bits=bits, encoding=encoding,
                                                  column_flip=False),
                                     Cell(technology="reram", bits=cell_bits))


@pytest.mark.parametrize("encoding", ["differential", "polarized"])
def test_most_negative_weight_is_encoded_or_rejected(encoding):
    bits, cell_bits = 4, 1
    w = np.array([[-8]])
    try:
        levels, col_out, col_weight, bias, sign = weights_k.encode_weights(
            w, bits, cell_bits, encoding, group_rows=1)
    except ValueError:
        return  # rejecting it would be fine too
    signed_w = col_weight * (sign[0, col_out] if sign is not None else 1)
    assert float((signed_w * levels[0]).sum() + bias) == -8.0


@pytest.mark.parametrize(("w", "match"), [
    (np.array([[128]]), "outside the signed 8-bit range"),
    (np.array([[-129]]), "outside the signed 8-bit range"),
    (np.array([1, 2]), "2-D"),
])
def test_encode_weights_rejects(w, match):
    with pytest.raises(ValueError, match=match):
        weights_k.encode_weights(w, 8, 2, "offset")


def test_encode_weights_rejects_unknown_encoding_and_mixed_fragments():
    with pytest.raises(ValueError, match="unknown weight encoding"):
        weights_k.encode_weights(np.zeros((2, 2), int), 8, 2, "sign_magnitude")
    with pytest.raises(ValueError, match="needs group_rows"):
        weights_k.encode_weights(np.zeros((2, 2), int), 9, 2, "polarized")
    w = np.array([[1, 2], [-1, 3], [4, -5], [-6, -7]])  # column 0 mixed twice
    with pytest.raises(ValueError, match="2 of 4 fragment-columns"):
        weights_k.encode_weights(w, 9, 2, "polarized", group_rows=2)


def test_polarize_keeps_the_heavier_sign_per_fragment():
    rng = np.random.default_rng(7)
    w = rng.integers(-100, 101, size=(11, 5))
    p = weights_k.polarize(w, 4)
    weights_k.fragment_signs(p, 4)  # does not raise: every fragment has one sign
    for g in range(3):
        for n in range(5):
            frag = w[g * 4:(g + 1) * 4, n]
            pos, neg = frag[frag > 0].sum(), -frag[frag < 0].sum()
            keep = (frag > 0) if pos >= neg else (frag < 0)
            assert np.array_equal(p[g * 4:(g + 1) * 4, n], np.where(keep, frag, 0))


@pytest.mark.parametrize(("rows", "group_rows", "cell_bits"), [
    (16, 16, 2), (37, 16, 2), (10, 4, 1), (9, 3, 3), (20, 8, 4),
])
def test_flip_columns_matches_oracle(rows, group_rows, cell_bits):
    rng = np.random.default_rng(rows * 100 + group_rows)
    top = 2**cell_bits - 1
    levels = rng.integers(0, top + 1, size=(rows, 13)).astype(np.uint8)
    levels[:, 0] = top  # a full column must flip
    levels[:, 1] = 0    # an empty one must not
    out, flipped = weights_k.flip_columns(levels, group_rows, top + 1)
    o_out, o_flips = oracle_flip(levels.tolist(), group_rows, top)
    assert out.tolist() == o_out
    assert flipped.tolist() == o_flips
    for g in range(len(o_flips)):
        rs = slice(g * group_rows, min(rows, (g + 1) * group_rows))
        n_rows = rs.stop - rs.start
        # every stored column sums to at most half its maximum
        assert (2 * out[rs].sum(axis=0, dtype=np.int64) <= n_rows * top).all()
        # unflipping recovers the levels
        back = np.where(flipped[g][None, :], top - out[rs], out[rs])
        assert np.array_equal(back, levels[rs])
    assert flipped[:, 0].all() and not flipped[:, 1].any()


# ----------------------------------------------------------------------------- ADC


@pytest.mark.parametrize("half", [0.5, 0.0])
@pytest.mark.parametrize(("bits", "sigma"), [(1, 0.2), (3, 0.05), (3, 0.4), (6, 0.1), (8, 0.3)])
def test_sar_thresholds_match_bit_by_bit_sar(bits, sigma, half):
    rng = np.random.default_rng(bits * 1000 + int(sigma * 100))
    n = 6
    nominal = 2.0 ** np.arange(bits)
    # large sigma gives non-binary (even non-monotone) weights: missing codes, wide codes
    bw = nominal + sigma * np.sqrt(nominal) * rng.standard_normal((n, bits))
    thr = adc_k.sar_thresholds(bw, half)
    assert thr.shape == (n, 2**bits - 1)
    assert (np.diff(thr, axis=1) >= 0).all()  # a threshold table is sorted
    u = rng.uniform(-3.0, 2**bits + 3.0, size=400)
    for i in range(n):
        want = [sar_convert(float(x), bw[i].tolist(), half) for x in u]
        by_count = [int((thr[i] <= x).sum()) for x in u]
        assert by_count == want
        got = adc_k.convert(u, thr, np.full(u.shape, i, dtype=np.int64), 2**bits, half)
        assert got.tolist() == want


def _walk_row(u, thr, walk, inst, codes, half, cal=None):
    """Values of code-unit inputs ``u`` converted by the SAR-walk row kernel."""
    n = u.shape[0]
    step, scale, x_max, near_e = walk
    # u enters as the offset (psum 0 x gain 0 + offset = u exactly, any float64)
    v = np.empty(n)
    adc_k._convert_walk(np.zeros((1, n), np.float32), 0, np.zeros(n), u, thr,
                        np.ascontiguousarray(step[inst].T), scale[inst], x_max[inst],
                        near_e[inst], np.zeros((0, 0)) if cal is None else cal,
                        inst.astype(np.int32), codes, half, np.zeros((0, 0), np.float32),
                        np.ones(n), np.empty(n, np.uint32), np.empty(n, np.uint32),
                        np.empty(n, np.bool_), v)
    return v


@pytest.mark.parametrize("half", [0.5, 0.0])
@pytest.mark.parametrize(("bits", "sigma"), [(1, 0.2), (3, 0.05), (7, 0.01), (8, 0.02),
                                             (8, 0.3), (6, 1.5)])
def test_sar_walk_gives_the_threshold_counts_also_at_the_thresholds(bits, sigma, half):
    """The vectorized float32 SAR walk gives the code of the threshold list (the count of
    thresholds <= u) for values on, just below and just above every threshold (float64
    neighbours), random values, and values far outside the range; weights <= 0 (sigma 1.5)
    send every value to the list. With a calibration table the code's value is looked up."""
    rng = np.random.default_rng(bits * 100 + int(sigma * 1000))
    n_inst = 5
    nominal = 2.0 ** np.arange(bits)
    bw = nominal + sigma * np.sqrt(nominal) * rng.standard_normal((n_inst, bits))
    thr = adc_k.sar_thresholds(bw, half)
    walk = adc_k.walk_tables(bw, half)
    assert walk[0].shape == (n_inst, adc_k.WALK_BITS)
    listed = walk[3] == 2**32 - 1  # instances whose every code comes from the list
    assert listed.any() == (bw <= 0).any(axis=1).any()
    codes = 1 << bits
    us, insts, is_rand = [], [], []
    for i in range(n_inst):
        t = thr[i][np.isfinite(thr[i])]
        near = np.concatenate([t, np.nextafter(t, -np.inf), np.nextafter(t, np.inf),
                               t + 1e-4, t - 1e-4, t + 3e-3, t - 3e-3])
        far = np.array([-1e30, -1e6, -3.0, -half, 0.0, codes + 5.0, 1e6, 1e30])
        rand = rng.uniform(-2.0, codes + 2.0, size=300)
        u = np.concatenate([near, far, rand])
        us.append(u)
        insts.append(np.full(u.shape, i))
        is_rand.append(np.arange(u.shape[0]) >= u.shape[0] - rand.shape[0])
    u, inst, is_rand = np.concatenate(us), np.concatenate(insts), np.concatenate(is_rand)
    want = np.array([int((thr[i] <= x).sum()) for x, i in zip(u, inst, strict=True)])
    assert np.array_equal(_walk_row(u, thr, walk, inst, codes, half), want)
    cal = rng.normal(size=(n_inst, codes))
    assert np.array_equal(_walk_row(u, thr, walk, inst, codes, half, cal), cal[inst, want])
    # the list decides only where the walk passed close to a trial level: not everywhere
    if not listed.any():
        step, scale, x_max, near_e = walk
        t = np.minimum(np.maximum(u + half, 0.0), x_max[inst])
        x = (t * scale[inst]).astype(np.uint32) & np.uint32(0xFFFFFF00)
        code = np.empty(u.shape, np.uint32)
        flag = np.empty(u.shape, np.bool_)
        n_near = adc_k._walk_codes(x, np.ascontiguousarray(step[inst].T), near_e[inst], code,
                                   flag)
        assert n_near == flag.sum() > 0  # values on the thresholds
        assert flag[is_rand].mean() < 0.05  # random values: the walk decides
        assert np.array_equal(code[~flag], want[~flag])


def test_walk_tables_empty_beyond_the_walk():
    bw = 2.0 ** np.arange(adc_k.WALK_BITS + 1)[None, :]
    assert all(t.shape[0] == 0 for t in adc_k.walk_tables(bw, 0.5))
    assert all(t.shape[0] == 0 for t in adc_k.walk_tables(np.zeros((0, 0)), 0.5))
    assert all(t.shape[0] == 1 for t in adc_k.walk_tables(bw[:, 1:], 0.5))


@pytest.mark.parametrize("rounding", ["nearest", "floor"])
@pytest.mark.parametrize("bits", [1, 4, 7])
def test_ideal_sar_is_ideal_rounding_including_ties(bits, rounding):
    half = 0.5 if rounding == "nearest" else 0.0
    ideal = 2.0 ** np.arange(bits)
    thr = adc_k.sar_thresholds(ideal[None, :], half)
    assert np.array_equal(thr[0], adc_k.ideal_thresholds(bits, rounding))
    codes = 2**bits
    # exact threshold values (ties), points between them, and beyond both ends
    u = np.concatenate([np.arange(-2, codes + 2) - half, np.arange(-2, codes + 2) + 0.25])
    for x in u:
        want = sar_convert(float(x), ideal.tolist(), half)
        assert want == oracle_code(float(x), None, codes, half)
    table = adc_k.convert(u, thr, np.zeros(u.shape, np.int64), codes, half)
    arith = adc_k.convert(u, np.zeros((0, 0)), np.zeros(u.shape, np.int64), codes, half)
    want = [oracle_code(float(x), None, codes, half) for x in u]
    assert table.tolist() == want
    assert arith.tolist() == want


def test_convert_uses_each_values_instance():
    rng = np.random.default_rng(3)
    thr = np.sort(rng.uniform(0, 15, size=(4, 15)), axis=1)
    u = rng.uniform(-1, 16, size=200)
    inst = rng.integers(0, 4, size=200)
    got = adc_k.convert(u, thr, inst, 16, 0.5)
    want = [oracle_code(float(x), list(thr[i]), 16, 0.5) for x, i in zip(u, inst, strict=True)]
    assert got.tolist() == want


@pytest.mark.parametrize("half", [0.5, 0.0])
def test_convert_arithmetic_clips(half):
    u = np.array([-1e9, -3.2, -0.4, 0.0, 0.49, 0.5, 6.7, 14.5, 15.0, 15.49, 16.2, 1e9])
    got = adc_k.convert(u, np.zeros((0, 0)), np.zeros(u.shape, np.int64), 16, half)
    assert got.tolist() == [oracle_code(float(x), None, 16, half) for x in u]
    assert got.min() == 0 and got.max() == 15


# ----------------------------------------------------------------------------- matmul

# Every case: overrides of the base arch, K, N, input density.
MATMUL_CASES = {
    "ideal offset": ({}, 37, 3, 0.7),
    "ideal offset flipped multi-level DAC": (
        {"weights.column_flip": True, "crossbar.dac.bits": 3, "crossbar.adc.bits": 8}, 37, 3,
        0.7),
    "ideal differential unsigned": (
        {"weights.encoding": "differential", "weights.bits": 7, "crossbar.unit_column": False,
         "inputs.signed": False, "inputs.bits": 5, "crossbar.dac.bits": 2,
         "crossbar.adc.bits": 8}, 20, 4, 0.5),
    "variation, coarse clipping ADC, zero-skip": (
        {"variation.cell.distribution": "lognormal", "variation.cell.sigma": 0.1,
         "variation.cell.stuck_at_0": 0.03, "variation.cell.stuck_at_1": 0.03,
         "crossbar.adc.bits": 4, "crossbar.adc.full_scale": 22.5, "crossbar.adc.clip": True,
         "inputs.zero_skip": True, "variation.seed": 3}, 37, 3, 0.3),
    "variation, flips, static ADC curves, floor": (
        {"weights.column_flip": True, "variation.cell.distribution": "normal",
         "variation.cell.sigma": 0.05, "crossbar.adc.bits": 5, "crossbar.adc.full_scale": 46.5,
         "crossbar.adc.clip": True, "crossbar.adc.rounding": "floor",
         "crossbar.adc.per_crossbar": 3, "variation.adc.offset_sigma_lsb": 0.3,
         "variation.adc.gain_sigma": 0.02, "variation.adc.cap_mismatch_sigma": 0.05,
         "crossbar.dac.bits": 2}, 37, 3, 0.7),
    "twos_complement unsigned multi-level with variation": (
        {"weights.encoding": "twos_complement", "weights.bits": 7, "inputs.signed": False,
         "inputs.bits": 6, "crossbar.dac.bits": 3, "crossbar.adc.bits": 6,
         "crossbar.adc.full_scale": 200.0, "crossbar.adc.clip": True,
         "variation.cell.sigma": 0.08, "variation.adc.gain_sigma": 0.05}, 40, 4, 0.6),
    "polarized fragments with variation": (
        {"weights.encoding": "polarized", "weights.bits": 9, "crossbar.fragment_rows": 4,
         "crossbar.unit_column": False, "crossbar.adc.bits": 4, "crossbar.adc.clip": True,
         "variation.cell.sigma": 0.1, "inputs.zero_skip": True,
         "variation.adc.offset_sigma_lsb": 0.2}, 30, 3, 0.4),
}


def _layer_inputs(arch, k, n, density, seed):
    rng = np.random.default_rng(seed)
    lo, hi = symmetric_range(arch.weights.bits, arch.weights.encoding)
    w = rng.integers(lo, hi + 1, size=(k, n))
    if arch.weights.encoding == "polarized":
        w = weights_k.polarize(w, arch.crossbar.group_rows)
    bx = arch.inputs.bits
    xlo, xhi = (-(2 ** (bx - 1)), 2 ** (bx - 1) - 1) if arch.inputs.signed else (0, 2**bx - 1)
    x = rng.integers(xlo, xhi + 1, size=(5, k))
    x[rng.random(x.shape) > density] = 0
    x[1] = 0  # one all-zero sample
    return w, x


def _dyadic_conductance(layer):
    """Round drawn conductances to multiples of 2**-12 so every partial sum is exact in float32
    whatever order BLAS adds in (a sum of 16 terms below 2**10 needs at most 22 bits): the
    layer and the loop model then see bit-identical partial sums, yet the cells stay non-ideal.
    """
    layer.conductance[:] = np.round(layer.conductance * 4096.0) / 4096.0


@pytest.mark.parametrize(("overrides", "k", "n", "density"), list(MATMUL_CASES.values()),
                         ids=list(MATMUL_CASES))
def test_matmul_matches_loop_model(make_arch, overrides, k, n, density):
    arch = make_arch(**overrides)
    w, x = _layer_inputs(arch, k, n, density, seed=k * n)
    layer = CrossbarLayer(arch, w, seed=11)
    ideal = not (arch.variation.cell.enabled or arch.variation.adc.static)
    if not ideal:
        _dyadic_conductance(layer)
    out, _ = layer.matmul(x)
    ref = reference_matmul(layer, arch, w.tolist(), x.tolist())
    scale = max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(out, ref, rtol=REL, atol=REL * scale)
    if ideal:
        assert np.array_equal(out, (x.astype(np.int64) @ w.astype(np.int64)).astype(float))
        # the programmed levels are the oracle's encoding (flipped where ISAAC flips)
        levels, _, _ = oracle_encode(w.tolist(), arch.weights.bits, arch.crossbar.cell.bits,
                                     arch.weights.encoding, arch.crossbar.group_rows)
        if arch.weights.column_flip:
            levels, _ = oracle_flip(levels, arch.crossbar.group_rows,
                                    arch.crossbar.cell.levels - 1)
        assert layer.levels[:k, :len(levels[0])].tolist() == levels
    else:
        # the non-idealities did change the result, so the comparison above meant something
        assert not np.array_equal(out, (x @ w).astype(float))


def test_matmul_output_spanning_many_crossbars(make_arch):
    # 16-bit offset weights on 2-bit cells: 8 columns per weight over 2-column crossbars
    arch = make_arch(**{"crossbar.columns": 2, "weights.bits": 16, "weights.column_flip": True,
                        "variation.cell.sigma": 0.1})
    w, x = _layer_inputs(arch, 20, 2, 0.7, seed=5)
    layer = CrossbarLayer(arch, w, seed=2)
    _dyadic_conductance(layer)
    out, _ = layer.matmul(x)
    ref = reference_matmul(layer, arch, w.tolist(), x.tolist())
    scale = max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(out, ref, rtol=REL, atol=REL * scale)


def test_matmul_output_spanning_many_crossbars_ideal_is_exact(make_arch):
    arch = make_arch(**{"crossbar.columns": 2, "weights.bits": 16,
                        "weights.column_flip": True})
    w, x = _layer_inputs(arch, 20, 2, 0.7, seed=5)
    out, _ = CrossbarLayer(arch, w).matmul(x)
    assert np.array_equal(out, (x @ w).astype(float))


def test_isaac_layer_is_exact(isaac_arch):
    # two row tiles (200 rows > 128), two column tiles, 16-bit signed data: |out| < 2**40
    rng = np.random.default_rng(0)
    w = rng.integers(-(2**15), 2**15, size=(200, 20))
    x = rng.integers(-(2**15), 2**15, size=(3, 200))
    layer = CrossbarLayer(isaac_arch, w)
    assert (layer.groups, layer.column_tiles) == (2, 2)
    out, _ = layer.matmul(x)
    exact = x.astype(object) @ w.astype(object)
    assert out.astype(np.int64).tolist() == exact.tolist()
    assert adc_full_scale(isaac_arch) == 255.0


def test_every_accepted_dac_width_runs(make_arch):
    arch = make_arch(**{"crossbar.dac.bits": 9, "inputs.bits": 9, "inputs.signed": False,
                        "crossbar.adc.bits": 16})
    w = np.array([[3], [-2]])
    x = np.array([[500, 7]])
    out, _ = CrossbarLayer(arch, w).matmul(x)
    assert out.tolist() == [[1486.0]]


def _shift_add(v, direct, units, coef, sw, out, n_rows, stride, block, has_units):
    """``adc._add_outputs`` (row order) or ``adc._add_block_outputs`` (output order) of rows
    starting at ``v[1]`` into ``out[2:]``."""
    if block:
        adc_k._add_block_outputs(v, 1, stride, out, 2, n_rows, direct, units, coef, sw,
                                 has_units, np.empty(n_rows + 3))
    else:
        adc_k._add_outputs(v, 1, stride, out, 2, n_rows, direct, units, coef, sw, has_units)


@pytest.mark.parametrize("per", [1, 3, 4, 8])
@pytest.mark.parametrize("n_units", [0, 1, 2])
@pytest.mark.parametrize("block", [False, True])
def test_shift_add_of_converted_rows_adds_in_order_bit_for_bit(per, n_units, block):
    """``adc._add_outputs`` (its 8- and 4-column cases written out) and the block path's
    ``adc._add_block_outputs`` give the bits of the plain left-to-right sum per output, on
    values where another order gives other bits (cancellation, -0.0, mixed magnitudes), over
    several rows at a stride; without unit terms (``n_units`` 0: one all-zero coefficient
    column, as ``combine_coefficients`` makes it) the sum starting at 0.0 itself is the same."""
    rng = np.random.default_rng(per * 10 + n_units)
    n_out, n_rows, stride = 5, 7, 5 * per + 2 * max(n_units, 1) + 1
    v = rng.standard_normal(n_rows * stride + 1) * 10.0 ** rng.integers(-8, 9,
                                                                          n_rows * stride + 1)
    v[::7] = -0.0
    direct = rng.standard_normal(n_out * per) * 10.0 ** rng.integers(-8, 9, n_out * per)
    k = max(n_units, 1)
    units = (n_out * per + rng.integers(0, 2 * k, size=(n_out, k))).astype(np.int32)
    coef = rng.standard_normal((n_out, k)) if n_units else np.zeros((n_out, 1))
    coef[0] = 0.0  # 0.0 + 0.0 * -0.0: the sum starts at +0.0
    has_units = bool(adc_k._has_units(coef))
    assert has_units == (n_units > 0)
    out = rng.standard_normal((n_rows + 2, n_out))
    ref = out.copy()
    sw = 3.0 - 2.0**-30
    for r in range(n_rows):
        base = 1 + r * stride
        for n in range(n_out):
            t = 0.0
            for j in range(k):
                t += coef[n, j] * v[base + units[n, j]]
            for q in range(per):
                t += direct[n * per + q] * v[base + n * per + q]
            ref[2 + r, n] += sw * t
    _shift_add(v, direct, units, coef, sw, out, n_rows, stride, block, has_units)
    assert out.tobytes() == ref.tobytes()
    # the cause moves the output: another weight of one column moves that output only
    base_out = np.zeros((n_rows + 2, n_out))
    _shift_add(v, direct, units, coef, sw, base_out, n_rows, stride, block, has_units)
    direct[per] *= 3.0  # column 0 of output 1
    moved = np.zeros((n_rows + 2, n_out))
    _shift_add(v, direct, units, coef, sw, moved, n_rows, stride, block, has_units)
    changed = (moved != base_out).any(axis=0)
    assert changed[1] and not changed[[0, 2, 3, 4]].any()
