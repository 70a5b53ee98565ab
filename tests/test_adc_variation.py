"""ADC transfer behaviour, device variation statistics, reproducibility and event counts.

Statistical checks draw many samples from a fixed seed and compare against the distribution's
own standard error: a tolerance of ``Z = 6`` standard errors would be exceeded by chance with
probability about 2e-9 per check, so a failure means a wrong distribution, not bad luck (and a
fixed seed makes each run identical anyway).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.kernels import adc as adc_k
from sim.kernels import noise as noise_k
from sim.kernels import variation as var_k
from sim.macros import crossbar as crossbar_mod
from sim.macros.crossbar import CrossbarLayer

#: Every test here runs on each array backend of this machine, with and without the exact
#: fast path (the ``array_backend`` fixture of conftest.py).
pytestmark = pytest.mark.usefixtures("array_backend")

#: Standard errors allowed by every statistical check (false alarm ~2e-9 each).
Z = 6.0
#: Draws for the distribution checks: 1e6 gives standard errors of ~1e-3 relative.
N_DRAWS = 1_000_000


def single_column_arch(make_arch, **overrides):
    """One weight = one positive column (differential, 3-bit weights in 2-bit cells) and one
    negative column, driven by 1-bit unsigned inputs: the output is exactly the positive
    column's reconstructed ADC value minus the negative column's."""
    base = {"weights.encoding": "differential", "weights.bits": 3,
            "crossbar.unit_column": False, "inputs.signed": False, "inputs.bits": 1,
            "crossbar.adc.bits": 4, "crossbar.adc.clip": True}
    return make_arch(**{**base, **overrides})


def binary_inputs(m, k, seed):
    return np.random.default_rng(seed).integers(0, 2, size=(m, k))


# ----------------------------------------------------------------------------- ideal ADC


def test_clipping_gives_the_top_code(make_arch):
    arch = single_column_arch(make_arch)  # 4-bit ADC, unit step: codes 0..15
    w = np.full((16, 1), 3)
    x = np.tril(np.ones((17, 16), dtype=np.int64), -1)  # sample t drives t rows: sum 3t
    out, _ = CrossbarLayer(arch, w).matmul(x)
    y = 3 * np.arange(17)
    assert out[:, 0].tolist() == np.minimum(y, 15).tolist()


@pytest.mark.parametrize("table", [False, True])
def test_convert_clips_both_ends(table):
    bits = 4
    thr = (adc_k.ideal_thresholds(bits, "nearest")[None, :] if table else np.zeros((0, 0)))
    u = np.array([-100.0, -0.6, -0.5, 0.2, 7.4, 14.6, 15.0, 40.0, 1e12])
    got = adc_k.convert(u, thr, np.zeros(u.shape, np.int64), 2**bits, 0.5)
    assert got.tolist() == [0, 0, 0, 0, 7, 15, 15, 15, 15]


@pytest.mark.parametrize(("full_scale", "rounding"), [
    (30.0, "nearest"), (45.0, "nearest"), (22.5, "nearest"), (30.0, "floor"), (45.0, "floor"),
])
def test_coarse_full_scale_error_within_one_step(make_arch, full_scale, rounding):
    arch = single_column_arch(make_arch, **{"crossbar.adc.full_scale": full_scale,
                                            "crossbar.adc.rounding": rounding})
    step = full_scale / 15  # coarser than one level per code
    rng = np.random.default_rng(1)
    w = rng.integers(1, 4, size=(16, 1))
    # densities from 0 to 1 so the partial sums cover the whole range and beyond
    x = (rng.random((400, 16)) < np.linspace(0, 1, 400)[:, None]).astype(np.int64)
    out, _ = CrossbarLayer(arch, w).matmul(x)
    y = (x @ w)[:, 0].astype(float)
    got = out[:, 0]
    eps = 1e-9 * full_scale  # float rounding of y / step
    in_range = y <= full_scale
    err = got - y
    if rounding == "nearest":
        assert (np.abs(err[in_range]) <= step / 2 + eps).all()
    else:
        assert ((err[in_range] <= eps) & (err[in_range] > -step - eps)).all()
    # every output is a whole number of steps, and the top code above the range
    assert np.allclose(got / step, np.round(got / step), rtol=0, atol=1e-9)
    assert (np.abs(got[y >= full_scale + step] - full_scale) <= eps).all()
    assert not np.array_equal(got, y)  # the step is coarse: some error must show


def test_floor_and_nearest_round_differently(make_arch):
    w = np.array([[3], [0]])
    x = np.array([[1, 0]])  # partial sum 3 with a step of 2 (full scale 30 / 15 codes)
    outs = {}
    for rounding in ("nearest", "floor"):
        arch = single_column_arch(make_arch, **{"crossbar.adc.full_scale": 30.0,
                                                "crossbar.adc.rounding": rounding})
        outs[rounding] = CrossbarLayer(arch, w).matmul(x)[0][0, 0]
    assert outs == {"nearest": 4.0, "floor": 2.0}  # 1.5 steps: code 2 vs code 1


# ----------------------------------------------------------------------------- static curves


def test_gain_and_offset_enter_in_code_units(make_arch):
    # per_crossbar 2: the positive and negative columns have their own ADC instance
    arch = single_column_arch(make_arch, **{"variation.adc.gain_sigma": 0.1,
                                            "variation.adc.offset_sigma_lsb": 0.7,
                                            "crossbar.adc.per_crossbar": 2})
    w = np.random.default_rng(3).integers(0, 4, size=(16, 1))
    x = binary_inputs(300, 16, 4)
    layer = CrossbarLayer(arch, w, seed=9)
    out, _ = layer.matmul(x)
    inst = layer.col_inst[0]
    assert inst[0] != inst[1]
    gain, offset = layer.adc_gain[inst], layer.adc_offset[inst]
    assert np.array_equal(layer.lin_a[0], gain / layer.step[0])
    assert np.array_equal(layer.lin_b[0], offset)
    y = (x @ w)[:, 0]
    for m in range(len(x)):
        pos = min(max(math.floor(y[m] * gain[0] + offset[0] + 0.5), 0), 15)
        neg = min(max(math.floor(0.0 * gain[1] + offset[1] + 0.5), 0), 15)
        assert out[m, 0] == pos - neg
    assert not np.array_equal(out[:, 0], y)


@pytest.mark.parametrize(("gain_sigma", "offset_sigma"), [(0.05, 0.4), (0.2, 2.0)])
def test_adc_instance_draw_statistics(gain_sigma, offset_sigma):
    n = 200_000
    gain, offset, thr, _ = adc_k.draw_adc_instances(
        n, 6, "nearest", offset_sigma_lsb=offset_sigma, gain_sigma=gain_sigma,
        cap_mismatch_sigma=0.0, rng=np.random.default_rng(0))
    assert thr.shape == (0, 0)  # no capacitor mismatch: the kernel rounds arithmetically
    se_mean = 1 / math.sqrt(n)
    se_std = math.sqrt(2 / (4 * n))  # normal kurtosis 3: SE(std)/std = sqrt((3-1)/(4n))
    assert abs(gain.mean() - 1) < Z * gain_sigma * se_mean
    assert abs(gain.std() / gain_sigma - 1) < Z * se_std
    assert abs(offset.mean()) < Z * offset_sigma * se_mean
    assert abs(offset.std() / offset_sigma - 1) < Z * se_std


def test_ideal_adc_instances_are_ideal():
    gain, offset, thr, _ = adc_k.draw_adc_instances(
        5, 8, "floor", offset_sigma_lsb=0.0, gain_sigma=0.0, cap_mismatch_sigma=0.0,
        rng=np.random.default_rng(0))
    assert gain.tolist() == [1.0] * 5 and offset.tolist() == [0.0] * 5
    assert thr.shape == (0, 0)


def test_transfer_curve_monotonic_and_inl_grows_with_cap_mismatch():
    bits = 8
    ideal = adc_k.ideal_thresholds(bits, "nearest")
    u = np.linspace(-2, 2**bits + 2, 5000)
    mean_inl = []
    for sigma in (0.002, 0.01, 0.04, 0.16):
        _, _, thr, _ = adc_k.draw_adc_instances(
            200, bits, "nearest", offset_sigma_lsb=0.0, gain_sigma=0.0,
            cap_mismatch_sigma=sigma, rng=np.random.default_rng(1))
        assert thr.shape == (200, 2**bits - 1)
        assert np.isfinite(thr).all()
        assert (np.diff(thr, axis=1) >= 0).all()
        for i in range(0, 200, 40):  # the curve of an instance never steps down
            codes = adc_k.convert(u, thr, np.full(u.shape, i, np.int64), 2**bits, 0.5)
            assert (np.diff(codes) >= 0).all()
            assert codes[0] == 0 and codes[-1] == 2**bits - 1
        mean_inl.append(float(np.abs(thr - ideal).max(axis=1).mean()))
    assert all(b > a for a, b in zip(mean_inl, mean_inl[1:], strict=False)), mean_inl
    # INL scales with sigma: 4x the mismatch gives well over 2x the INL
    assert all(b > 2 * a for a, b in zip(mean_inl, mean_inl[1:], strict=False)), mean_inl


# ----------------------------------------------------------------------------- noise, seeds


def _layer_and_inputs(arch, seed=4):
    rng = np.random.default_rng(0)
    w = rng.integers(-128, 128, size=(37, 3))
    x = rng.integers(-128, 128, size=(6, 37))
    return CrossbarLayer(arch, w, seed=seed), w, x


@pytest.mark.parametrize("noise", [{"variation.adc.noise_sigma_lsb": 0.5},
                                   {"variation.cell.read_noise_sigma": 0.05}])
def test_noise_is_reproducible_from_seeds(make_arch, noise):
    arch = make_arch(**noise)
    layer, w, x = _layer_and_inputs(arch)
    a, ev_a = layer.matmul(x, seed=0)
    b, ev_b = layer.matmul(x, seed=0)
    assert a.tobytes() == b.tobytes()  # same call seed: the same bits
    assert ev_a.counts() == ev_b.counts()
    again, _, _ = _layer_and_inputs(arch)
    assert again.matmul(x, seed=0)[0].tobytes() == a.tobytes()  # a fresh, equal layer
    assert not np.array_equal(layer.matmul(x, seed=1)[0], a)  # another call seed
    other, _, _ = _layer_and_inputs(arch, seed=5)
    assert not np.array_equal(other.matmul(x, seed=0)[0], a)  # another layer seed
    assert not np.array_equal(a, (x @ w).astype(float))  # the noise did something


def test_noise_does_not_depend_on_thread_count(make_arch, monkeypatch):
    arch = make_arch(**{"variation.adc.noise_sigma_lsb": 0.5,
                        "variation.cell.read_noise_sigma": 0.05})
    layer, _, x = _layer_and_inputs(arch)
    x = np.tile(x, (5, 1))
    # tiny chunks so that several run in the thread pool
    monkeypatch.setattr(crossbar_mod, "PSUM_CHUNK_BYTES", 4 * 1024)
    outs = []
    for threads in ("1", "2", "3"):
        monkeypatch.setenv("IMCSIM_THREADS", threads)
        outs.append(layer.matmul(x, seed=7)[0].tobytes())
    assert outs[0] == outs[1] == outs[2]


def test_static_variation_is_fixed_by_the_layer_seed(make_arch):
    arch = make_arch(**{"variation.cell.sigma": 0.1, "variation.cell.stuck_at_0": 0.05,
                        "variation.cell.stuck_at_1": 0.05, "variation.adc.gain_sigma": 0.05,
                        "variation.adc.offset_sigma_lsb": 0.5,
                        "variation.adc.cap_mismatch_sigma": 0.02})
    l1, _, x = _layer_and_inputs(arch, seed=5)
    l2, _, _ = _layer_and_inputs(arch, seed=5)
    l3, _, _ = _layer_and_inputs(arch, seed=6)
    for attr in ("conductance", "levels", "adc_gain", "adc_offset", "adc_thresholds"):
        assert getattr(l1, attr).tobytes() == getattr(l2, attr).tobytes(), attr
        assert getattr(l1, attr).tobytes() != getattr(l3, attr).tobytes(), attr
    assert l1.matmul(x)[0].tobytes() == l2.matmul(x)[0].tobytes()
    seq = CrossbarLayer(arch, np.zeros((37, 3), int), seed=np.random.SeedSequence(5))
    assert seq.conductance.tobytes() == CrossbarLayer(arch, np.zeros((37, 3), int),
                                                      seed=5).conductance.tobytes()


# ----------------------------------------------------------------------------- statistics


def _lognormal_kurtosis(sigma):
    s2 = math.log1p(sigma**2)
    return math.exp(4 * s2) + 2 * math.exp(3 * s2) + 3 * math.exp(2 * s2) - 3


@pytest.mark.parametrize(("distribution", "sigma"), [
    ("normal", 0.1), ("normal", 0.25), ("lognormal", 0.1), ("lognormal", 0.25),
    ("lognormal", 0.5),
])
def test_cell_factors_mean_one_std_sigma(distribution, sigma):
    f = var_k.cell_factors((1000, N_DRAWS // 1000), distribution, sigma,
                           np.random.default_rng(0))
    assert f.dtype == np.float32 and f.shape == (1000, 1000)
    assert (f >= 0).all()
    kurt = 3.0 if distribution == "normal" else _lognormal_kurtosis(sigma)
    mean_tol = Z * sigma / math.sqrt(N_DRAWS)                 # SE of the mean
    std_tol = Z * math.sqrt((kurt - 1) / (4 * N_DRAWS))       # relative SE of the std
    assert abs(f.mean(dtype=np.float64) - 1) < mean_tol
    assert abs(f.std(dtype=np.float64) / sigma - 1) < std_tol
    if distribution == "lognormal":
        assert (f > 0).all()


def test_cell_factors_edge_cases():
    ones = var_k.cell_factors((3, 4), "normal", 0.0, np.random.default_rng(0))
    assert ones.dtype == np.float32 and (ones == 1).all()
    wide = var_k.cell_factors((100_000,), "normal", 2.0, np.random.default_rng(0))
    assert wide.min() == 0.0  # a conductance cannot go negative: clipped
    with pytest.raises(ValueError, match="unknown variation distribution"):
        var_k.cell_factors((2,), "uniform", 0.1, np.random.default_rng(0))


@pytest.mark.parametrize(("p0", "p1"), [(0.05, 0.02), (0.0, 0.3), (0.5, 0.5)])
def test_stuck_at_rates(p0, p1):
    levels = np.ones((1000, 1000), dtype=np.uint8)
    before = levels.copy()
    out = var_k.stuck_at(levels, p0, p1, 3, np.random.default_rng(0))
    assert np.array_equal(levels, before)  # the input is not modified
    n = levels.size
    for value, p in ((0, p0), (3, p1), (1, 1 - p0 - p1)):
        frac = float((out == value).mean())
        assert abs(frac - p) <= Z * math.sqrt(p * (1 - p) / n) + 1e-12, (value, frac, p)
    assert set(np.unique(out).tolist()) <= {0, 1, 3}


def test_no_stuck_cells_returns_the_levels_unchanged():
    levels = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert var_k.stuck_at(levels, 0.0, 0.0, 3, np.random.default_rng(0)) is levels


def test_layer_stuck_at_rates_on_unit_columns(make_arch):
    p0, p1 = 0.1, 0.05
    arch = make_arch(**{"variation.cell.stuck_at_0": p0, "variation.cell.stuck_at_1": p1})
    k = 1000
    layer = CrossbarLayer(arch, np.zeros((k, 40), int), seed=3)
    unit = layer.levels[:k, layer.data_columns:]  # intended level 1 everywhere
    n = unit.size
    for value, p in ((0, p0), (3, p1)):
        frac = float((unit == value).mean())
        assert abs(frac - p) <= Z * math.sqrt(p * (1 - p) / n), (value, frac)
    assert not layer.levels[k:].any() and not layer.conductance[k:].any()  # padding rows


@pytest.mark.parametrize("sigma", [0.05, 0.3])
def test_read_noise_variance(sigma):
    power = np.repeat(np.array([[0.5, 2.0, 9.0, 40.0]], dtype=np.float32), 250_000, axis=0)
    psum = np.zeros(power.shape, dtype=np.float32)
    got = noise_k.add_read_noise(psum, psum, power, sigma, noise_k.stream_key(0),
                                 np.zeros(0, np.int32), power.shape[0], 0)
    assert got is psum  # in place
    n = power.shape[0]
    for c in range(power.shape[1]):
        var = sigma**2 * float(power[0, c])
        col = psum[:, c].astype(np.float64)
        assert abs(col.mean()) < Z * math.sqrt(var / n)
        assert abs(col.var() / var - 1) < Z * math.sqrt(2 / n)  # normal: SE(var)/var


# ----------------------------------------------------------------------------- events


def test_event_counts_hand_computed(make_arch):
    # Base arch: 8-bit offset weights in 2-bit cells -> 4 columns + 1 unit column (5),
    # 8-bit signed inputs with a 1-bit DAC -> 8 steps (7 magnitude + sign), K = 3 rows in one
    # 16-row group.
    w = np.array([[5], [-7], [100]])
    x = np.array([[1, 0, -1],   # 1: step 0; -1 = 1111111 + sign: steps 0..7 -> 8 active steps,
                                # rows driven 2 + 6 x 1 + 1 = 9
                  [0, 0, 0],    # nothing driven, no active step
                  [3, 2, 0]])   # 3 = 11, 2 = 10: step 0 (1 row), step 1 (2 rows) -> 2 steps, 3
    common = {
        "dac_pulses": 12,                    # 9 + 0 + 3 driven rows x 1 column tile
        "cell_reads": 60,                    # 12 driven rows x 5 columns
        "input_buffer_read_bits": 3 * 3 * 8,
        "input_register_write_bits": 3 * 3 * 8,   # x 1 column tile
        "output_buffer_write_bits": 3 * 1 * 16,
        "macs": 9,
        "cell_macs": 3 * 16 * 5 * 8,         # samples x padded rows x columns x steps
    }
    expected = {
        False: {"adc_conversions": 24 * 5, "adc_conversions_skipped": 0,
                "sample_holds": 120, "shift_adds": 120},
        True: {"adc_conversions": 10 * 5, "adc_conversions_skipped": 14 * 5,
               "sample_holds": 50, "shift_adds": 50},
    }
    for skip in (False, True):
        arch = make_arch(**{"inputs.zero_skip": skip})
        out, ev = CrossbarLayer(arch, w).matmul(x)
        assert out[:, 0].tolist() == [-95.0, 0.0, 1.0]
        counts = ev.counts()
        assert {key: counts[key] for key in common} == common
        assert {key: counts[key] for key in expected[skip]} == expected[skip]


def test_event_counts_two_groups_two_tiles(make_arch):
    # N = 3 outputs x 4 columns = 12 data columns: two 8-column tiles, so 14 columns with the
    # two unit columns. K = 20 rows: two 16-row groups (32 padded rows).
    w = np.ones((20, 3), dtype=int)
    x = np.zeros((1, 20), dtype=int)
    x[0, 0] = 1    # group 0, step 0
    x[0, 17] = 2   # group 1, step 1
    common = {"dac_pulses": 2 * 2, "cell_reads": 2 * 14, "input_buffer_read_bits": 20 * 8,
              "input_register_write_bits": 20 * 8 * 2, "output_buffer_write_bits": 3 * 16,
              "macs": 60, "cell_macs": 32 * 14 * 8}
    # 2 groups x 8 steps = 16 (group, step) cycles, of which 2 have any input
    expected = {False: {"adc_conversions": 16 * 14, "adc_conversions_skipped": 0},
                True: {"adc_conversions": 2 * 14, "adc_conversions_skipped": 14 * 14}}
    for skip in (False, True):
        layer = CrossbarLayer(make_arch(**{"inputs.zero_skip": skip}), w)
        assert (layer.groups, layer.column_tiles, layer.columns_total) == (2, 2, 14)
        out, ev = layer.matmul(x)
        assert out.tolist() == [[3.0, 3.0, 3.0]]
        counts = ev.counts()
        assert {key: counts[key] for key in common} == common
        assert {key: counts[key] for key in expected[skip]} == expected[skip]


def test_event_counts_add_over_calls(make_arch):
    arch = make_arch(**{"inputs.zero_skip": True})
    layer, _, x = _layer_and_inputs(arch)
    x[2] = 0
    _, whole = layer.matmul(x)
    _, first = layer.matmul(x[:2])
    _, rest = layer.matmul(x[2:])
    first.add(rest)
    assert first.counts() == whole.counts()
