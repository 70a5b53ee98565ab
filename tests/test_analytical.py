"""Analytical mode against the bit-true pass on the same data, and the engine's invariants."""

from __future__ import annotations

import numpy as np
import pytest

from sim.engine.analytical import InputHistogram, estimate_events
from sim.engine.placement import LayerShape, geometry, place
from sim.engine.timing import schedule
from sim.errors import MappingError
from sim.macros import CrossbarLayer

#: Zero-skip counts rest on an independence assumption between rows: allowed relative error.
SKIP_TOL = 0.15


def _relu_like(rng, m, k, bits):
    x = rng.integers(0, 2 ** (bits - 1), size=(m, k))
    x[rng.random((m, k)) < 0.6] = 0  # post-ReLU sparsity
    return x


@pytest.mark.parametrize("zero_skip", [False, True])
@pytest.mark.parametrize("dac", [1, 2])
def test_analytical_counts_match_bit_true(make_arch, zero_skip, dac):
    arch = make_arch(**{"inputs.zero_skip": zero_skip, "crossbar.dac.bits": dac,
                        "crossbar.adc.clip": True})
    rng = np.random.default_rng(0)
    k, n, m = 37, 5, 64
    w = rng.integers(-127, 128, size=(k, n))
    x = _relu_like(rng, m, k, arch.inputs.bits)
    _, exact = CrossbarLayer(arch, w).matmul(x)
    est = estimate_events(arch, k, n, m, InputHistogram.of(x))
    for name in ("dac_pulses", "cell_reads", "input_buffer_read_bits", "macs", "cell_macs",
                 "input_register_write_bits", "output_buffer_write_bits"):
        assert getattr(est, name) == pytest.approx(getattr(exact, name), rel=1e-9), name
    conv = exact.adc_conversions + exact.adc_conversions_skipped
    assert est.adc_conversions + est.adc_conversions_skipped == conv
    if zero_skip:
        assert exact.adc_conversions_skipped > 0
        assert est.adc_conversions == pytest.approx(exact.adc_conversions, rel=SKIP_TOL)
    else:
        assert est.adc_conversions == exact.adc_conversions


def test_geometry_matches_programmed_layer(isaac_arch, make_arch):
    rng = np.random.default_rng(1)
    for arch in (isaac_arch, make_arch(**{"weights.encoding": "differential",
                                          "weights.bits": 7})):
        for k, n in ((5, 3), (300, 40), (129, 17)):
            lo = -(2 ** (arch.weights.bits - 1)) + 1
            layer = CrossbarLayer(arch, rng.integers(lo, -lo, size=(k, n)))
            g = geometry(arch, k, n)
            assert (g.crossbars, g.columns_total) == (layer.crossbars, layer.columns_total)


def _chain():
    return [LayerShape(name="c1", k=27, n=16, vectors=64, out_width=8, kernel_height=3),
            LayerShape(name="c2", k=144, n=32, vectors=16, out_width=4, kernel_height=3,
                       source="c1"),
            LayerShape(name="fc", k=512, n=10, vectors=1, source="c2")]


def test_schedule_invariants_and_modes(isaac_arch):
    placements = place(isaac_arch, _chain(), duplicate=False)
    pipe = schedule(isaac_arch, placements, {}, pipelined=True)
    seq = schedule(isaac_arch, placements, {}, pipelined=False)
    for t in (pipe, seq):
        assert t.latency_cycles > 0
        for lt in t.layers:
            assert lt.busy_cycles > 0 and lt.end_cycle >= lt.start_cycle >= 0
            assert all(isinstance(v, int) for v in (lt.busy_cycles, lt.end_cycle))
    assert pipe.latency_cycles < seq.latency_cycles  # overlapping layers saves time
    by = {lt.name: lt for lt in seq.layers}
    assert by["c2"].start_cycle >= by["c1"].end_cycle - by["c1"].step_cycles
    # zero-skip: half the steps executed halves the compute of a layer
    half = schedule(isaac_arch, placements, {"c1": 0.5}, pipelined=True)
    assert half.layers[0].busy_cycles < pipe.layers[0].busy_cycles


def test_duplication_balances_and_model_too_big_is_reported(isaac_arch, make_arch):
    placements = place(isaac_arch, _chain())
    assert placements[0].duplicates > placements[2].duplicates
    small = make_arch(**{"organization.tiles": 1, "organization.imas_per_tile": 1,
                         "organization.crossbars_per_ima": 2})
    with pytest.raises(MappingError, match=r"needs \d+ crossbars .* has 2 \(short by"):
        place(small, _chain())
    ok = make_arch(**{"organization.tiles": 1, "organization.imas_per_tile": 1,
                      "organization.crossbars_per_ima": 2, "organization.reprogram": True})
    assert len(place(ok, _chain())) == 3
