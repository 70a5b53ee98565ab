"""Per-step activity (``Events.activity``) of the bit-true pass and of packed bit-planes,
against the slow reference :meth:`StepActivity.from_active`."""

from __future__ import annotations

import numpy as np
import pytest

from sim.engine import analytical
from sim.kernels import activity as activity_k
from sim.macros import CrossbarLayer
from sim.macros import crossbar as crossbar_mod
from sim.macros.activity import StepActivity


def _steps_oracle(x: np.ndarray, bits: int, dac_bits: int, signed: bool) -> np.ndarray:
    """DAC step values ``(M, P, K)``, written out plainly from the two's complement."""
    mag = bits - 1 if signed else bits
    low = x & ((1 << mag) - 1)
    n = -(-mag // dac_bits)
    out = [(low >> (dac_bits * p)) & ((1 << dac_bits) - 1) for p in range(n)]
    if signed:
        out.append((x < 0).astype(np.int64))
    return np.stack(out, axis=1)


def _active_oracle(x, bits, dac_bits, signed, group_rows) -> np.ndarray:
    """Boolean ``(M, P, G)``: some row of the group gets a non-zero DAC step."""
    st = _steps_oracle(x, bits, dac_bits, signed)
    m, p, k = st.shape
    g = -(-k // group_rows)
    pad = np.zeros((m, p, g * group_rows), np.int64)
    pad[:, :, :k] = st
    return (pad.reshape(m, p, g, group_rows) != 0).any(axis=3)


def _inputs(rng, m, k, bits, signed, zero_share, row_zero_share=0.0):
    lo = -(2 ** (bits - 1)) if signed else 0
    hi = 2 ** (bits - 1) if signed else 2**bits
    x = rng.integers(lo, hi, size=(m, k))
    x[rng.random((m, k)) < zero_share] = 0
    # Whole rows silent in some vectors: groups and tiles correlate, as in real feature maps.
    x[:, rng.random(k) < row_zero_share] = 0
    x[rng.random(m) < 0.2] = 0
    return x


def _assert_same(a: StepActivity, b: StepActivity) -> None:
    assert (a.steps, a.row_tiles, a.groups_per_crossbar, a.vectors) == (
        b.steps, b.row_tiles, b.groups_per_crossbar, b.vectors)
    np.testing.assert_array_equal(a.hist_max, b.hist_max)
    np.testing.assert_array_equal(a.hist_tile, b.hist_tile)


CASES = [
    # (overrides, K, weights sign) -- K not a multiple of rows, 1..5 row tiles, fragments
    ({}, 37, 0),
    ({"crossbar.dac.bits": 2, "crossbar.adc.clip": True}, 70, 0),
    ({"crossbar.dac.bits": 3, "inputs.signed": False, "crossbar.adc.clip": True}, 16, 0),
    ({"weights.encoding": "polarized", "weights.bits": 7, "crossbar.fragment_rows": 4,
      "crossbar.adc.clip": True}, 45, 1),
    ({"weights.encoding": "polarized", "weights.bits": 7, "crossbar.fragment_rows": 8,
      "crossbar.rows": 32, "crossbar.adc.clip": True}, 150, 1),
]


@pytest.mark.parametrize(("over", "k", "positive"), CASES)
def test_bit_true_activity_matches_reference(make_arch, over, k, positive):
    arch = make_arch(**{"inputs.zero_skip": True, **over})
    rng = np.random.default_rng(k)
    hi = 2 ** (arch.weights.bits - 1)
    w = rng.integers(0 if positive else 1 - hi, hi, size=(k, 3))
    inp = arch.inputs
    x = _inputs(rng, 90, k, inp.bits, inp.signed, 0.6, 0.3)
    layer = CrossbarLayer(arch, w)
    _, ev = layer.matmul(x)
    act = _active_oracle(x, inp.bits, arch.crossbar.dac.bits, inp.signed,
                         arch.crossbar.group_rows)
    gpc = arch.crossbar.rows // arch.crossbar.group_rows
    ref = StepActivity.from_active(act, gpc)
    _assert_same(ev.activity, ref)
    assert ev.activity.row_tiles == -(-k // arch.crossbar.rows)
    # The histograms and the conversion count describe the same cycles.
    done = int((ev.activity.hist_tile * np.arange(gpc + 1)).sum())
    assert done * layer.columns_total == ev.adc_conversions
    assert ev.activity.hist_max.sum() == x.shape[0] * layer.steps


def test_activity_moves_with_the_data(make_arch):
    arch = make_arch(**{"inputs.zero_skip": True})
    rng = np.random.default_rng(3)
    w = rng.integers(-127, 128, size=(40, 2))
    x = _inputs(rng, 50, 40, 8, True, 0.3)
    layer = CrossbarLayer(arch, w)
    dense = layer.matmul(x)[1].activity
    x2 = x.copy()
    x2[:, 16:] = 0  # rows of the second and third row tile silent: they skip every step
    sparse = layer.matmul(x2)[1].activity
    assert sparse.hist_tile[1:, 0].tolist() == [50 * layer.steps] * 2
    assert dense.hist_tile[1:, 0].sum() < sparse.hist_tile[1:, 0].sum()
    assert sparse.executed_fraction <= dense.executed_fraction


def test_without_zero_skip_every_pair_is_fully_active(make_arch):
    arch = make_arch(**{"inputs.zero_skip": False})
    rng = np.random.default_rng(4)
    x = _inputs(rng, 30, 37, 8, True, 0.7)
    layer = CrossbarLayer(arch, rng.integers(-127, 128, size=(37, 2)))
    act = layer.matmul(x)[1].activity
    _assert_same(act, StepActivity.dense(layer.steps, layer.groups, 1, 30))
    assert act.executed_fraction == 1.0


def test_activity_independent_of_chunks_and_threads(make_arch, monkeypatch):
    arch = make_arch(**{"inputs.zero_skip": True, "crossbar.dac.bits": 2,
                        "crossbar.adc.clip": True})
    rng = np.random.default_rng(5)
    w = rng.integers(-127, 128, size=(70, 4))
    x = _inputs(rng, 301, 70, 8, True, 0.5, 0.2)
    layer = CrossbarLayer(arch, w)
    monkeypatch.setenv("IMCSIM_THREADS", "1")
    whole = layer.matmul(x)[1]
    assert len(layer._chunks(301)) == 1
    monkeypatch.setattr(crossbar_mod, "PSUM_CHUNK_BYTES", 4096)
    assert len(layer._chunks(301)) > 5
    serial = layer.matmul(x)[1]
    monkeypatch.setenv("IMCSIM_THREADS", "3")
    threaded = layer.matmul(x)[1]
    for ev in (serial, threaded):
        _assert_same(ev.activity, whole.activity)
        assert ev.counts() == whole.counts()


@pytest.mark.parametrize(("bits", "dac", "signed", "group_rows", "gpc", "k"), [
    (8, 1, True, 16, 1, 37), (8, 2, True, 4, 4, 45), (6, 4, False, 128, 1, 300),
    (8, 3, False, 5, 3, 64), (8, 1, True, 64, 2, 200), (4, 4, False, 8, 8, 129),
])
def test_packed_planes_give_the_reference_activity(bits, dac, signed, group_rows, gpc, k):
    rng = np.random.default_rng(k + dac)
    x = _inputs(rng, 120, k, bits, signed, 0.5, 0.2)
    planes = activity_k.pack_planes(x)
    nb = planes.shape[1]
    # planes of each step (two's-complement sign extension above the stored width): the
    # analytical mode's own mapping, so the kernels are checked as that mode uses them
    step_planes = analytical.step_planes(analytical.InputHistogram.of(x), bits, dac, signed)
    assert step_planes.shape[1] == nb
    counts = activity_k.planes_tile_counts(planes, step_planes, k, group_rows, gpc)
    hist_max, hist_tile = activity_k.tile_histograms(counts, gpc)
    ref = StepActivity.from_active(_active_oracle(x, bits, dac, signed, group_rows), gpc)
    np.testing.assert_array_equal(hist_max, ref.hist_max)
    np.testing.assert_array_equal(hist_tile, ref.hist_tile)


def test_tile_histograms_refuse_impossible_counts():
    with pytest.raises(ValueError, match="more than its 2 row groups"):
        activity_k.tile_histograms(np.full((1, 1, 1), 3, np.uint16), 2)
