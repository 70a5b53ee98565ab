"""CAP-RAM's two-step ADC calibration (``crossbar.adc.calibration: two_step``).

Per-ADC linear fit, then a master curve common to a layer's ADCs, fitted from seeded known
inputs through the layer's own macro and applied to every conversion's code inside the fused
convert-and-accumulate kernel. Checked here: the fit recovers known curves; with mismatched
ADCs the measured output and conversion errors fall; with ideal ADCs nothing changes, bit
for bit; same seed, same bits; the calibration uses no data the layer is later given; the
zero-block shortcut stays exact when code 0 no longer means zero.
"""

from __future__ import annotations

import numpy as np
import pytest

from sim.kernels import adc as adc_k
from sim.macros.crossbar import CrossbarLayer

#: Every macro test here runs on each array backend of this machine, with and without the
#: exact fast path (the ``array_backend`` fixture of conftest.py).
pytestmark = pytest.mark.usefixtures("array_backend")

#: Per-instance static curves of a badly matched ADC set (LSB / relative).
MISMATCH = {"variation.adc.offset_sigma_lsb": 1.0, "variation.adc.gain_sigma": 0.03,
            "variation.adc.cap_mismatch_sigma": 0.03, "variation.adc.noise_sigma_lsb": 0.2}


def macro_arch(make_arch, calibration="two_step", **overrides):
    """Differential 5-bit weights in 2-bit cells, 8-bit unsigned bit-serial inputs, a 7-bit
    ADC shared by 4 columns: 32 x 16 crossbars, so a 64 x 8 layer uses several ADCs."""
    base = {"weights.encoding": "differential", "weights.bits": 5,
            "crossbar.unit_column": False, "inputs.signed": False, "crossbar.rows": 32,
            "crossbar.columns": 16, "crossbar.adc.per_crossbar": 4, "crossbar.adc.bits": 7,
            "crossbar.adc.calibration": calibration}
    return make_arch(**{**base, **overrides})


def layer_data(seed=0, m=120):
    rng = np.random.default_rng(seed)
    w = rng.integers(-15, 16, size=(64, 8))
    x = rng.integers(0, 256, size=(m, 64))
    return w, x


def rel_rms(out, ref):
    return float(np.sqrt(np.mean((out - ref) ** 2)) / np.std(ref))


# ------------------------------------------------------------------------- the fit itself


def test_linear_fit_recovers_gain_and_offset_of_each_adc():
    rng = np.random.default_rng(0)
    gain, offset = np.array([0.9, 1.0, 1.1]), np.array([2.0, -1.5, 0.25])
    t = rng.uniform(0, 100, size=30_000)
    inst = rng.integers(0, 3, size=t.shape)
    code = np.clip(np.floor(gain[inst] * t + offset[inst] + 0.5), 0, 127)
    table, info = adc_k.two_step_tables(t, code, inst, 3, 128)
    assert np.allclose(info["gain"], gain, rtol=2e-3)
    assert np.allclose(info["offset"], offset, atol=0.02)
    assert info["fitted"].all()
    # each code maps near its linear inverse (the master curve adds the pooled residual of
    # rounding, under a quarter LSB here), on a 1/16-LSB grid
    k = np.arange(10, 100)
    for i in range(3):
        assert np.all(np.abs(table[i, k] - (k - offset[i]) / gain[i]) < 0.25)
        assert np.all(table[i] * 16 == np.rint(table[i] * 16))


def test_master_curve_removes_a_nonlinearity_common_to_all_adcs():
    rng = np.random.default_rng(1)
    t = rng.uniform(0, 120, size=60_000)
    inst = rng.integers(0, 4, size=t.shape)
    bow = 3.0 * np.sin(np.pi * t / 120)  # the same 3-LSB bow on every ADC
    gain = np.array([0.95, 1.0, 1.02, 1.05])
    code = np.clip(np.floor(gain[inst] * (t + bow) + 0.5), 0, 127)
    table, info = adc_k.two_step_tables(t, code, inst, 4, 128)
    lin = (code - info["offset"][inst]) / info["gain"][inst]
    ok = (code > 0) & (code < 127)
    err_linear = np.abs(lin - t)[ok].mean()
    err_two_step = np.abs(table[inst, code.astype(int)] - t)[ok].mean()
    assert err_linear > 0.7  # the linear fit alone cannot take a bow out
    assert err_two_step < 0.4 * err_linear


def test_an_adc_without_calibration_data_keeps_the_identity():
    t = np.array([10.0, 20.0, 30.0])
    table, info = adc_k.two_step_tables(t, t + 1, np.zeros(3, int), 2, 64)
    assert not info["fitted"][1]
    assert np.array_equal(table[1], np.arange(64.0))


# ------------------------------------------------------------------------- in the macro


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_calibration_reduces_the_measured_error_of_mismatched_adcs(make_arch, seed):
    w, x = layer_data(seed)
    ref = x @ w
    plain = CrossbarLayer(macro_arch(make_arch, "none", **MISMATCH), w, seed=seed)
    cal = CrossbarLayer(macro_arch(make_arch, **MISMATCH), w, seed=seed)
    # the same chip: the same static ADC curves, only the digital correction differs
    assert np.array_equal(plain.adc_thresholds, cal.adc_thresholds)
    assert cal.adc_table.shape == (cal.adc_gain.shape[0], 128)
    out_plain, ev_plain = plain.matmul(x)
    out_cal, ev_cal = cal.matmul(x)
    assert rel_rms(out_cal, ref) < rel_rms(out_plain, ref)
    assert ev_cal.counts() == ev_plain.counts()  # calibration is digital: no extra events
    conv_plain = plain.column_conversions(x[:16])
    conv_cal = cal.column_conversions(x[:16])
    assert np.array_equal(conv_plain["code"], conv_cal["code"])
    assert np.array_equal(conv_plain["value"], conv_plain["code"])
    err_plain = np.abs(conv_plain["value"] - conv_plain["ideal"]).mean()
    err_cal = np.abs(conv_cal["value"] - conv_cal["ideal"]).mean()
    assert err_cal < 0.7 * err_plain


def test_conversions_readout_matches_matmul(make_arch):
    # column_conversions reads the same values the fused kernel shift-adds: recombining
    # them with the layer's column and step weights gives matmul's outputs.
    arch = macro_arch(make_arch, **MISMATCH)
    w, x = layer_data(5, m=20)
    layer = CrossbarLayer(arch, w, seed=5)
    conv = layer.column_conversions(x, seed=7)
    out, _ = layer.matmul(x, seed=7)
    g = layer.step_weight[:, None, None]
    # output n = sum over groups, steps and its columns of step weight x column weight x value
    total = np.zeros_like(out)
    for gi in range(layer.groups):
        d, units, coef = layer.combine[gi]
        v = (conv["value"][gi] * g).sum(axis=0) * layer.step[gi]
        total += (v[:, : layer.data_columns] * d).reshape(
            out.shape[0], layer.n, -1).sum(axis=2)
        total += (v[:, units] * coef[None]).sum(axis=2)
    assert np.allclose(total, out, rtol=0, atol=1e-9 * np.abs(out).max())


@pytest.mark.parametrize("overrides", [
    {},  # offset encoding with a unit column
    {"weights.encoding": "differential", "weights.bits": 7, "crossbar.unit_column": False},
    {"weights.encoding": "twos_complement", "weights.bits": 7, "crossbar.unit_column": False},
    {"inputs.zero_skip": True},
    {"crossbar.adc.rounding": "floor"},
])
def test_ideal_adcs_give_the_same_bits_with_calibration(make_arch, overrides):
    rng = np.random.default_rng(4)
    a_none = make_arch(**{**overrides, "crossbar.adc.calibration": "none"})
    a_cal = make_arch(**{**overrides, "crossbar.adc.calibration": "two_step"})
    half = 1 << (a_cal.weights.bits - 1)
    w = rng.integers(-half + 1, half, size=(40, 5))
    x = rng.integers(-128, 128, size=(33, 40))
    x[::3] = 0
    cal = CrossbarLayer(a_cal, w, seed=2)
    assert cal.adc_calibration is not None and cal.adc_calibration["identity"]  # measured
    out_none, ev_none = CrossbarLayer(a_none, w, seed=2).matmul(x)
    out_cal, ev_cal = cal.matmul(x)
    assert out_cal.tobytes() == out_none.tobytes()
    assert ev_cal.counts() == ev_none.counts()


def test_same_seed_same_bits_other_seed_other_tables(make_arch):
    arch = macro_arch(make_arch, **MISMATCH)
    w, x = layer_data(0)
    a, b = CrossbarLayer(arch, w, seed=9), CrossbarLayer(arch, w, seed=9)
    assert a.adc_table.tobytes() == b.adc_table.tobytes()
    assert a.matmul(x)[0].tobytes() == b.matmul(x)[0].tobytes()
    c = CrossbarLayer(arch, w, seed=10)
    assert not np.array_equal(a.adc_table, c.adc_table)


def test_calibration_data_is_its_own_and_fixed_before_any_input(make_arch):
    # The tables are fitted at construction from the layer's own seeded calibration inputs:
    # running data through the layer does not change them, and more calibration vectors
    # give a different (better estimated) fit.
    arch = macro_arch(make_arch, **MISMATCH)
    w, x = layer_data(0)
    layer = CrossbarLayer(arch, w, seed=3)
    before = layer.adc_table.copy()
    layer.matmul(x)
    assert np.array_equal(layer.adc_table, before)
    more = CrossbarLayer(macro_arch(make_arch, **MISMATCH,
                                    **{"crossbar.adc.calibration_samples": 1024}), w, seed=3)
    assert not np.array_equal(more.adc_table, before)
    assert np.array_equal(more.adc_thresholds, layer.adc_thresholds)


def test_zero_blocks_are_dropped_only_where_they_still_add_nothing(make_arch):
    # With an offset, code 0 of a calibrated ADC may stand for a nonzero value (or a zero
    # input give a nonzero code): dropping all-zero blocks must not change the bits.
    arch = macro_arch(make_arch, **{"variation.adc.offset_sigma_lsb": 1.5,
                                    "variation.adc.gain_sigma": 0.03})
    w, x = layer_data(1)
    x[:, :32] = 0  # the first row group's blocks are all zero
    x[::2] = 0
    layer = CrossbarLayer(arch, w, seed=4)
    assert np.any(layer.adc_table[:, 0] != 0)
    out_drop, _ = layer.matmul(x)
    layer.drop_zero_blocks = False
    out_keep, _ = layer.matmul(x)
    assert out_drop.tobytes() == out_keep.tobytes()


def test_calibrated_range_then_two_step(make_arch):
    arch = macro_arch(make_arch, **MISMATCH, **{"crossbar.adc.range": "calibrated",
                                                "crossbar.adc.clip": True,
                                                "crossbar.adc.bits": 5})
    w, x = layer_data(2)
    layer = CrossbarLayer(arch, w, seed=1)
    assert layer.adc_calibration is None  # no range yet: nothing to calibrate
    layer.calibrate(x[:32])
    assert layer.adc_calibration is not None and layer.adc_table.shape[1] == 32
    out, _ = layer.matmul(x)
    assert np.isfinite(out).all()


def test_bad_calibration_keys_name_their_path(make_arch):
    problems = make_arch.problems(**{"crossbar.adc.calibration": "three_step",
                                     "crossbar.adc.calibration_samples": 2})
    paths = {p for p, _ in problems}
    assert {"crossbar.adc.calibration", "crossbar.adc.calibration_samples"} <= paths
