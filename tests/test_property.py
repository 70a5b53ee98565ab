"""Property tests: with ideal devices the crossbar computes the exact integer product.

Hypothesis draws the encoding, cell bits, weight and input bits (whole cells only, as the
config demands), DAC bits (bit-serial up to multi-level), signed or unsigned inputs, crossbar
shape, fragments, column flipping and zero-skipping, and a random small layer (K up to 70, so
several row groups and column tiles occur). The ADC is given exactly the bits that
``max_partial_sum`` asks for, so the config's own coverage rule is tested too: if that bound
were too low, the ADC would clip and the product would come out wrong.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.config.schema import max_partial_sum
from sim.kernels import backend as backend_k
from sim.kernels import weights as weights_k
from sim.macros.crossbar import CrossbarLayer

ENCODINGS = ("offset", "differential", "twos_complement", "polarized")


@pytest.fixture(autouse=True, scope="module", params=backend_k.available())
def array_backend(request):
    """Every property holds on each array backend of this machine."""
    with backend_k.forced(request.param):
        yield request.param


@st.composite
def ideal_layers(draw):
    """``(overrides, weights, inputs)`` of an ideal crossbar layer."""
    encoding = draw(st.sampled_from(ENCODINGS))
    cell_bits = draw(st.integers(1, 4))
    # whole cells: offset stores all weight bits, the others bits - 1 magnitude bits
    min_slices = 2 if (encoding == "offset" and cell_bits == 1) else 1
    slices = draw(st.integers(min_slices, 3))
    w_bits = slices * cell_bits + (0 if encoding == "offset" else 1)
    signed = draw(st.booleans())
    in_bits = draw(st.integers(1, 8))
    dac_bits = draw(st.integers(1, in_bits))
    rows = draw(st.sampled_from([8, 16]))
    columns = draw(st.sampled_from([4, 8]))
    overrides = {
        "crossbar.rows": rows, "crossbar.columns": columns, "crossbar.cell.bits": cell_bits,
        "crossbar.dac.bits": dac_bits, "weights.bits": w_bits, "weights.encoding": encoding,
        "inputs.bits": in_bits, "inputs.signed": signed,
        "inputs.zero_skip": draw(st.booleans()),
    }
    if encoding == "polarized":
        overrides["crossbar.fragment_rows"] = draw(st.sampled_from(
            [f for f in (2, 4, 8, 16) if f <= rows]))
    unit_column = encoding == "offset" or draw(st.booleans())
    overrides["crossbar.unit_column"] = unit_column
    overrides["weights.column_flip"] = (encoding != "polarized" and unit_column
                                        and draw(st.booleans()))

    k, n, m = draw(st.integers(1, 70)), draw(st.integers(1, 5)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lo, hi = weights_k.weight_range(w_bits)
    if encoding in ("differential", "polarized"):
        lo += 1  # -2**(bits-1) does not fit bits-1 magnitude bits: see test_kernels_oracle
    w = rng.integers(lo, hi + 1, size=(k, n))
    w[rng.random(w.shape) < 0.1] = hi  # extremes drive columns to full scale
    w[rng.random(w.shape) < 0.1] = lo
    if encoding == "polarized":
        w = weights_k.polarize(w, overrides["crossbar.fragment_rows"])
    xlo, xhi = (-(2 ** (in_bits - 1)), 2 ** (in_bits - 1) - 1) if signed else (0, 2**in_bits - 1)
    x = rng.integers(xlo, xhi + 1, size=(m, k))
    x[rng.random(x.shape) < 0.1] = xlo
    x[rng.random(x.shape) < 0.1] = xhi
    x[rng.random(x.shape) < draw(st.sampled_from([0.0, 0.5, 0.9]))] = 0  # sparsity: skipping
    return overrides, w, x


def _arch_with_exact_adc(make_arch, overrides):
    """The arch with the fewest ADC bits the config accepts without clipping."""
    probe = make_arch(**overrides, **{"crossbar.adc.clip": True})
    bits = max(1, max_partial_sum(probe).bit_length())  # 2**bits - 1 >= the largest sum
    return make_arch(**overrides, **{"crossbar.adc.bits": bits})


@settings(max_examples=60, deadline=None)
@given(case=ideal_layers())
def test_ideal_crossbar_is_exact(make_arch, case):
    overrides, w, x = case
    arch = _arch_with_exact_adc(make_arch, overrides)
    exact = x.astype(object) @ w.astype(object)
    runs = {}
    for fast in (False, True):  # the per-row-group model, and the exact fast path
        layer = CrossbarLayer(arch, w, seed=1, exact_fast_path=fast)
        out, ev = runs[fast] = layer.matmul(x)
        assert out.dtype == np.float64 and out.shape == exact.shape
        assert out.tolist() == exact.tolist()
        assert ev.macs == x.shape[0] * w.shape[0] * w.shape[1]
        assert layer.exact == (fast and not (arch.variation.cell.stuck_at_0
                                             or arch.variation.cell.stuck_at_1))
    # same bits (no -0.0 either) and the same events on both paths
    assert runs[True][0].tobytes() == runs[False][0].tobytes()
    assert runs[True][1] == runs[False][1]


@settings(max_examples=60, deadline=None)
@given(case=ideal_layers())
def test_zero_skip_changes_counts_not_results(make_arch, case):
    overrides, w, x = case
    runs = {}
    for skip in (False, True):
        arch = _arch_with_exact_adc(make_arch, {**overrides, "inputs.zero_skip": skip})
        runs[skip] = CrossbarLayer(arch, w, seed=1, exact_fast_path=False).matmul(x)
    (out_off, ev_off), (out_on, ev_on) = runs[False], runs[True]
    assert np.array_equal(out_on, out_off)
    assert ev_off.adc_conversions_skipped == 0
    assert (ev_on.adc_conversions + ev_on.adc_conversions_skipped
            == ev_off.adc_conversions + ev_off.adc_conversions_skipped)
    assert ev_on.adc_conversions <= ev_off.adc_conversions
    # skipping idle cycles does not change which rows are driven
    assert (ev_on.dac_pulses, ev_on.cell_reads) == (ev_off.dac_pulses, ev_off.cell_reads)
    if not x.any():
        assert ev_on.adc_conversions == 0
